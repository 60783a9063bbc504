"""Tokens per second through Corral's transformers driver against raw ``model.generate``, same settings.

Both sides load the same Hugging Face folder in the same dtype on the CPU and decode greedily for exactly
``--tokens`` new tokens (so both do the same work), in rounds that alternate raw and Corral (and which goes
first) so machine noise hits both alike. Three workloads: a plain completion, a streamed completion (raw
streams through transformers' ``TextIteratorStreamer`` on a thread, as its documentation shows), and a
streamed chat (Corral renders the chat template from the messages; raw gets the same prompt text). The
median of each side is printed with the ratio Corral / raw.

    python benchmarks/transformers_tokens.py [--model DIR] [--tokens 64] [--rounds 5] [--threads 1]

Without ``--model`` it writes a fresh random-weight Llama (hidden 512, 8 layers, 32k vocabulary, ~50M
parameters) with the plugin's ``hf-causal-lm`` exporter, the one behind ``corral create``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path
from corral.testing import open_model

PROMPT = "The history of the printing press begins"
QUESTION = [{"role": "user", "content": "Tell me about the history of the printing press."}]
TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def write_model(out: Path) -> Path:
    from corral_transformers.export import HfCausalLmExporter
    from corral_transformers.spec import ModelSpec

    spec = ModelSpec(vocab_size=32000, hidden_size=512, layers=8, heads=8, kv_heads=4, ffn_size=1536,
                     context_length=2048, tie_embeddings=True)
    return HfCausalLmExporter().export(out, {"spec": spec, "seed": 0})


def timed(run) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="Hugging Face causal LM folder (default: a fresh ~50M Llama)")
    parser.add_argument("--tokens", type=int, default=64, help="tokens generated per run")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    args = parser.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, TextIteratorStreamer

    import corral_transformers
    from corral.library import open_library
    from corral.plugins import build_host

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as scratch:
        path = (args.model or write_model(Path(scratch) / "model")).resolve()
        raw = AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True,
                                                   dtype=getattr(torch, args.dtype)).eval()
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        library = open_library(Path(scratch) / "home", build_host(entry_points=False, plugins=[corral_transformers]))
        model = library.import_path(path).model
        settings = {"dtype": args.dtype, "device": "cpu", "threads": args.threads, "chat_template": TEMPLATE}
        n = args.tokens
        # Exactly n tokens on both sides: the same greedy work, however early the model would stop.
        raw_args = dict(max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=tokenizer.eos_token_id)
        corral_args = dict(temperature=0, max_tokens=n)

        with open_model(library, model.name, overrides=settings) as handle:
            handle.lm.generation_config.min_new_tokens = n  # Corral's requests inherit the model's defaults
            chat_prompt = handle.render(QUESTION)
            plain_ids = tokenizer(PROMPT, return_tensors="pt")
            chat_ids = tokenizer(chat_prompt, return_tensors="pt", add_special_tokens=False)

            def raw_plain():
                with torch.inference_mode():
                    out = raw.generate(**plain_ids, **raw_args)
                tokenizer.decode(out[0][plain_ids["input_ids"].shape[1]:], skip_special_tokens=True)

            def raw_stream(ids):
                def run():
                    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
                    worker = threading.Thread(target=raw.generate, kwargs={**ids, **raw_args, "streamer": streamer})
                    worker.start()
                    for _ in streamer:
                        pass
                    worker.join()
                return run

            def corral_plain():
                answer = handle.complete(PROMPT, **corral_args)
                assert answer.completion_tokens == n, answer

            workloads = {
                "complete": (raw_plain, corral_plain),
                "complete (stream)": (raw_stream(plain_ids),
                                      lambda: all(True for _ in handle.complete(PROMPT, stream=True, **corral_args))),
                "chat (stream)": (raw_stream(chat_ids),
                                  lambda: all(True for _ in handle.chat(QUESTION, stream=True, **corral_args))),
            }
            params = sum(p.numel() for p in raw.parameters())
            print(f"model {path.name} ({params / 1e6:.1f}M parameters, {args.dtype}), {n} tokens per run, "
                  f"{args.rounds} rounds, {args.threads} thread(s)")
            for name, (run_raw, run_corral) in workloads.items():
                timed(run_raw)  # warm both paths once (allocator, caches)
                timed(run_corral)
                rates: dict[str, list[float]] = {"raw": [], "corral": []}
                for round_no in range(args.rounds):
                    order = [("raw", run_raw), ("corral", run_corral)]
                    for side, run in order if round_no % 2 == 0 else order[::-1]:  # no side always goes first
                        rates[side].append(n / timed(run))
                raw_tps, corral_tps = statistics.median(rates["raw"]), statistics.median(rates["corral"])
                print(f"{name:18} raw transformers {raw_tps:7.1f} tok/s   corral {corral_tps:7.1f} tok/s   "
                      f"ratio {corral_tps / raw_tps:.3f}")
        library.store.close()


if __name__ == "__main__":
    main()
