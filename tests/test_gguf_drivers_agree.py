"""Both GGUF drivers (corral-llamacpp on llama-cpp-python, corral-llama-server on xllamacpp) answer the
same tool requests the same way on the real Gemma at temperature 0: the same prompt, the same call
parsed from it (name and arguments), whole and streamed, and the same free answer."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.slow

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
                   "required": ["city", "unit"], "additionalProperties": False}}}  # fmt: skip
ASKED = [{"role": "user", "content": "What is the weather in Paris?"}]
CHOICES = {"auto": "auto", "required": "required", "named": {"type": "function", "function": {"name": "get_weather"}}}
ASK = {"temperature": 0, "seed": 0, "max_tokens": 48}


def _answers(handle) -> dict:
    from corral.api import drain

    out = {}
    for label, choice in CHOICES.items():
        whole = handle.chat(ASKED, tools=[WEATHER], tool_choice=choice, **ASK)
        pieces, end = drain(handle.chat(ASKED, tools=[WEATHER], tool_choice=choice, stream=True, **ASK))
        out[label] = {
            "prompt_tokens": whole.prompt_tokens,
            "finish": whole.finish_reason,
            "text": whole.text,
            "calls": [(c.name, json.loads(c.arguments)) for c in whole.tool_calls],
            "streamed": [(c.name, json.loads(c.arguments)) for c in end.tool_calls],
            "stream_finish": end.finish_reason,
        }
    return out


def test_both_gguf_drivers_make_the_same_calls(tmp_path, gemma_path):
    llamacpp = pytest.importorskip("corral_llamacpp")
    llama_server = pytest.importorskip("corral_llama_server")
    from corral.testing import build_host, open_library, open_model

    library = open_library(tmp_path / "home", build_host(entry_points=False, plugins=[llamacpp, llama_server]))
    try:
        library.import_path(gemma_path, name="gemma")
        answers = {}
        for driver in ("llamacpp", "llama-server"):
            library.update_settings("gemma", {"driver": driver})
            extra = {"parallel": 1} if driver == "llama-server" else {}
            with open_model(library, "gemma", overrides={"n_ctx": 512, "threads": 1, **extra}) as handle:
                assert type(handle).__name__ == {"llamacpp": "LlamaCppModel", "llama-server": "LlamaServerModel"}[driver]
                answers[driver] = _answers(handle)
    finally:
        library.store.close()
    assert answers["llamacpp"] == answers["llama-server"]
    for label in ("required", "named"):
        made = answers["llamacpp"][label]
        assert made["finish"] == made["stream_finish"] == "tool_calls" and made["text"] == ""
        assert made["calls"] == made["streamed"] == [("get_weather", {"city": "Paris", "unit": "c"})]
