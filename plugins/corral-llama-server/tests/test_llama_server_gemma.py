"""The real Gemma 3 270M (Q4_K_M, from PyPI) through the llama-server driver, 8 slots: chat, stream,
completion, and 8 requests decoded together, each answered as it is alone."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from corral.api import ChatResult, drain
from corral.testing import open_model

pytestmark = pytest.mark.slow

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
GREEDY = {"temperature": 0, "max_tokens": 16, "seed": 0}


def test_chat_uses_gemmas_turn_format(gemma):
    result = gemma.chat(QUESTION, **GREEDY)
    assert isinstance(result, ChatResult)
    assert result.text.strip() and result.completion_tokens > 0
    # <bos><start_of_turn>user\n...<end_of_turn>\n<start_of_turn>model\n, as corral-llamacpp renders it.
    assert result.prompt_tokens == 16
    assert (gemma.template.name, gemma.template.origin) == ("gemma", "built-in for architecture gemma3")


def test_stream_is_the_same_answer_in_pieces(gemma):
    pieces, end = drain(gemma.chat(QUESTION, stream=True, **GREEDY))
    assert len(pieces) >= 5
    answer = gemma.chat(QUESTION, **GREEDY)
    assert "".join(pieces) == answer.text
    assert (end.completion_tokens, end.finish_reason) == (answer.completion_tokens, answer.finish_reason)


def test_completion_is_deterministic_at_temperature_zero_with_a_seed(gemma):
    first = gemma.complete("The three primary colours are", temperature=0, seed=1234, max_tokens=20)
    second = gemma.complete("The three primary colours are", temperature=0, seed=1234, max_tokens=20)
    assert first.text.strip() and first.text == second.text
    assert first.completion_tokens == 20 and first.finish_reason == "length"
    warm = [gemma.complete("Once upon a time", temperature=1.0, seed=s, max_tokens=16).text for s in (7, 7)]
    assert warm[0] == warm[1]


def test_eight_concurrent_requests_each_get_their_own_answer(gemma):
    """Eight different prompts decoded together in one batch: every answer is the one the same request
    gets alone (same seed, temperature 0), and belongs to its own prompt.

    llama.cpp's sums are not bit-identical across batch sizes, so where two tokens are all but tied a
    batched answer may take the other one; these prompts have one clear continuation each.
    """
    prompts = [", ".join(str(k + i) for i in range(5)) + "," for k in range(10, 90, 10)]
    params = {"temperature": 0, "seed": 1, "max_tokens": 24}
    alone = [gemma.complete(p, **params).text for p in prompts]
    together: dict[int, str] = {}
    start = threading.Barrier(len(prompts))

    def ask(i: int) -> None:
        start.wait()
        together[i] = gemma.complete(prompts[i], **params).text

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(prompts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [together[i] for i in range(len(prompts))] == alone
    for k, answer in zip(range(10, 90, 10), alone):
        assert answer.startswith(f" {k + 5}, {k + 6},"), answer


def test_quantized_kv_cache_answers(gemma_library):
    quantized = {"n_ctx": 256, "threads": 1, "parallel": 2, "flash_attn": True, "cache_type_k": "q8_0",
                 "cache_type_v": "q8_0"}
    with open_model(gemma_library, "gemma", overrides=quantized) as handle:
        answer = handle.complete("The three primary colours are", temperature=0, seed=1, max_tokens=8)
    assert answer.text.strip() and answer.completion_tokens == 8


def test_speculative_decoding_with_a_draft_model_keeps_the_greedy_answer(gemma_library, gemma_path):
    plain = {"n_ctx": 256, "threads": 1, "parallel": 1}
    with open_model(gemma_library, "gemma", overrides=plain) as handle:
        alone = handle.complete("1, 2, 3, 4, 5,", temperature=0, seed=1, max_tokens=16)
        ram = handle.memory()["ram"]
    drafted = {**plain, "draft_model": str(gemma_path), "draft_max": 8}
    with open_model(gemma_library, "gemma", overrides=drafted) as handle:
        assert handle.memory()["ram"] > ram  # the draft model is loaded beside it
        assert handle.complete("1, 2, 3, 4, 5,", temperature=0, seed=1, max_tokens=16).text == alone.text


def test_response_format_makes_json_of_the_schema(gemma):
    """``response_format`` reaches llama.cpp as a grammar: the answer is JSON of the schema, in chat and in a
    plain completion (where Gemma alone would write prose)."""
    schema = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}}, "required": ["city"],
              "additionalProperties": False}
    asked = [{"role": "user", "content": "What is the capital of France? Answer in JSON."}]
    answer = gemma.chat(asked, temperature=0, seed=0, max_tokens=40,
                        response_format={"type": "json_schema", "json_schema": {"name": "city", "schema": schema}})
    assert answer.finish_reason == "stop" and json.loads(answer.text) == {"city": "Paris"}
    completed = gemma.complete("The capital of France is", temperature=0, seed=0, max_tokens=24,
                               response_format={"type": "json_object"})
    assert completed.text.startswith("{")
    plain = gemma.complete("The capital of France is", temperature=0, seed=0, max_tokens=24)
    assert not plain.text.lstrip().startswith("{")


MEASURE = r"""
import json, sys
from pathlib import Path
import corral_llama_server
from corral.testing import build_host, open_library, open_model

library = open_library(Path(sys.argv[1]), build_host(entry_points=False, plugins=[corral_llama_server]))
with open_model(library, "gemma", overrides=json.loads(sys.argv[2])) as handle:
    print(json.dumps(handle.memory()))
"""


@pytest.mark.parametrize("parallel", [1, 8])
def test_estimate_is_within_ten_percent_of_the_measured_load(gemma_library, parallel, tmp_path):
    """The estimate before a load (every slot's KV cache counted) against the RAM a fresh process measured
    around the same load, within corral-llamacpp's bound (tests/test_estimate.py)."""
    import subprocess
    import sys

    from corral.api import estimate_memory

    settings = {"n_ctx": 512, "threads": 1, "threads_batch": 1, "parallel": parallel}
    model = gemma_library.store.get_model("gemma")
    estimate = estimate_memory(model, settings).total_bytes
    home = Path(gemma_library.store.path).parent
    out = subprocess.run([sys.executable, "-c", MEASURE, str(home), json.dumps(settings)], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    measured = json.loads(out.stdout.strip().splitlines()[-1])["ram"]
    print(f"\nGemma 3 270M, n_ctx 512, parallel {parallel}: estimated {estimate / 2**20:.0f} MiB, "
          f"measured after load {measured / 2**20:.0f} MiB")
    assert abs(estimate - measured) / measured < 0.10, f"estimate {estimate / 2**20:.0f} MiB, measured {measured / 2**20:.0f} MiB"
