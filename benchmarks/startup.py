"""How fast does ``corral`` start, against a bare ``python -c "import click"``?

Runs ``corral --help``, ``corral ls`` (on an empty library in a temporary home, every installed plugin
loaded) and ``python -c "import click"`` interleaved, each as a fresh process, and prints the medians
and the ratios. Target: ``corral ls`` within 2.5x of the bare click import.

    python benchmarks/startup.py [--runs 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time


def timed(cmd: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "CORRAL_HOME": home}
        corral = [sys.executable, "-m", "corral"]
        cases = {
            "python -c 'import click'": [sys.executable, "-c", "import click"],
            "corral --help": corral + ["--help"],
            "corral ls": corral + ["ls"],
        }
        for cmd in cases.values():  # warm the file cache and create the library
            timed(cmd, env)
        times: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.runs):
            for name, cmd in cases.items():
                times[name].append(timed(cmd, env))
    base = statistics.median(times["python -c 'import click'"])
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:28s} median {median * 1000:7.1f} ms   ratio {median / base:5.2f}x")


if __name__ == "__main__":
    main()
