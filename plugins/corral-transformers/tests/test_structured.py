"""Structured output and tool calls through the transformers driver (llguidance), on the tiny random
Llama with the Qwen 2.5 chat template."""

from __future__ import annotations

import json

import pytest

from corral.api import InvalidRequest
from corral.testing import open_model

SCHEMA = {"type": "object", "properties": {"ok": {"type": "boolean"}, "unit": {"enum": ["c", "f"]}},
          "required": ["ok", "unit"], "additionalProperties": False}
WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"unit": {"enum": ["c", "f"]}}, "required": ["unit"],
    "additionalProperties": False}}}


@pytest.fixture
def qwen_chat(library, tiny_created, tmp_path):
    from tool_templates import QWEN25
    from transformers_factories import copy_model

    folder = copy_model(tiny_created, tmp_path / "tiny-qwen", chat_template=QWEN25)
    model = library.import_path(folder, name="tiny-qwen").model
    with open_model(library, model.id) as handle:
        yield handle


def test_schema_forces_valid_json_even_from_random_weights(qwen_chat):
    import jsonschema

    fmt = {"type": "json_schema", "json_schema": {"name": "w", "schema": SCHEMA, "strict": True}}
    for seed in (0, 1):
        answer = qwen_chat.chat([{"role": "user", "content": "hi"}], response_format=fmt, max_tokens=40,
                                temperature=1.0, seed=seed)
        jsonschema.validate(json.loads(answer.text), SCHEMA)


def test_named_tool_call_and_its_stream(qwen_chat):
    from corral.api import drain

    ask = {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
           "max_tokens": 40, "temperature": 0, "seed": 0}
    answer = qwen_chat.chat([{"role": "user", "content": "weather?"}], **ask)
    assert answer.finish_reason == "tool_calls" and answer.text == ""
    assert answer.tool_calls[0].name == "get_weather"
    assert json.loads(answer.tool_calls[0].arguments)["unit"] in ("c", "f")
    pieces, ended = drain(qwen_chat.chat([{"role": "user", "content": "weather?"}], stream=True, **ask))
    arguments = "".join(t.arguments for p in pieces if not isinstance(p, str) for t in p.tool_calls)
    assert arguments == answer.tool_calls[0].arguments and ended.finish_reason == "tool_calls"
    prompt = qwen_chat.render([{"role": "user", "content": "weather?"}])
    assert "<tools>" not in prompt  # tools are shown only when a request brings them


def test_unsupported_keyword_is_named(qwen_chat):
    fmt = {"type": "json_schema", "json_schema": {"name": "n", "schema": {"not": {"type": "string"}}}}
    with pytest.raises(InvalidRequest, match="not"):
        qwen_chat.chat([{"role": "user", "content": "x"}], response_format=fmt)
