"""Writing a fresh model's weights: Corral's streaming safetensors writer against the raw libraries.

Builds the ``small`` preset (100M parameters) once, then writes it with
``corral_transformers.safetensors_stream.save``, ``safetensors.torch.save_file`` and transformers'
``save_pretrained``, and prints each time and Corral's ratio to them (below 1.0 = Corral is faster).
Each writer runs in a fresh process and writes ``--repeat`` times; the fastest write counts, since disk
and page-cache state and other processes only ever add time. Set TMPDIR=/dev/shm to leave the disk out.

    python plugins/corral-transformers/benchmarks/write_weights.py [--preset small] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile

CHILD = r"""
import json, sys, time
from pathlib import Path
import torch
from corral_transformers.export import build_model, llama_config
from corral_transformers.spec import PRESETS, ModelSpec

how, preset, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])
spec = ModelSpec(**PRESETS[preset])
model = build_model(llama_config(spec), seed=0)
times = []
for _ in range(int(sys.argv[4])):
    start = time.perf_counter()
    if how == "corral":
        from corral_transformers import safetensors_stream
        safetensors_stream.save(model.named_parameters(), out / "model.safetensors", dtype="float32")
    elif how == "safetensors":
        from safetensors.torch import save_file
        save_file({n: p.detach().contiguous() for n, p in model.named_parameters()},
                  str(out / "model.safetensors"), metadata={"format": "pt"})
    else:
        model.save_pretrained(str(out))
    times.append(time.perf_counter() - start)
seconds = min(times)  # the least disturbed run: other processes only ever add time
print(json.dumps({"seconds": seconds}))
"""


def run(how: str, preset: str, repeat: int) -> dict:
    with tempfile.TemporaryDirectory() as out:
        done = subprocess.run([sys.executable, "-c", CHILD, how, preset, out, str(repeat)], capture_output=True,
                              text=True, check=True)
        return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--repeat", type=int, default=5, help="writes per writer; the fastest counts")
    args = parser.parse_args()
    results = {how: run(how, args.preset, args.repeat) for how in ("corral", "safetensors", "save_pretrained")}
    for how, r in results.items():
        print(f"{how:16s} {r['seconds']:6.2f} s")
    corral = results["corral"]["seconds"]
    for raw in ("safetensors", "save_pretrained"):
        print(f"time ratio corral / {raw}: {corral / results[raw]['seconds']:.2f}")


if __name__ == "__main__":
    main()
