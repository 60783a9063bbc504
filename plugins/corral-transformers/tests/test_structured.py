"""Structured output, tool calls, log-probabilities and OpenAI's penalties through the transformers driver
(llguidance), on the tiny random Llama with the Qwen 2.5 chat template."""

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


def test_logprobs_penalties_and_completion_formats_through_the_openai_client(library, tiny_created, tmp_path):
    """Log-probabilities of chat and completions, whole and streamed, a completion held to a JSON schema,
    and OpenAI's penalties and logit_bias, through the real ``openai`` client against a started server."""
    import jsonschema
    import openai

    from corral.testing import Runtime, ServerThread
    from tool_templates import QWEN25
    from transformers_factories import copy_model

    from transformers import AutoTokenizer

    folder = copy_model(tiny_created, tmp_path / "tiny-qwen", chat_template=QWEN25)
    library.import_path(folder, name="tiny-qwen")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    runtime = Runtime(library)
    try:
        with ServerThread(runtime) as server:
            client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
            ask = {"model": "tiny-qwen", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 6,
                   "temperature": 0, "logprobs": True, "top_logprobs": 3}
            answer = client.chat.completions.create(**ask)
            content = answer.choices[0].logprobs.content
            assert len(content) == answer.usage.completion_tokens > 0
            for token in content:
                assert token.logprob <= 0 and len(token.top_logprobs) == 3
                assert token.logprob == token.top_logprobs[0].logprob  # greedy takes the most likely
            chunks = list(client.chat.completions.create(stream=True, **ask))
            streamed = [t for c in chunks if c.choices and c.choices[0].logprobs for t in c.choices[0].logprobs.content]
            assert [(t.token, t.logprob) for t in streamed] == [(t.token, t.logprob) for t in content]

            text = client.completions.create(model="tiny-qwen", prompt="The sky is", max_tokens=4, temperature=0,
                                             logprobs=2)
            logprobs = text.choices[0].logprobs
            assert len(logprobs.token_logprobs) == text.usage.completion_tokens
            assert all(v <= 0 for v in logprobs.token_logprobs) and all(len(t) <= 2 for t in logprobs.top_logprobs)
            fmt = {"type": "json_schema", "json_schema": {"name": "w", "schema": SCHEMA}}
            shaped = client.completions.create(model="tiny-qwen", prompt="JSON:", max_tokens=40, temperature=1.0,
                                               seed=0, extra_body={"response_format": fmt})
            jsonschema.validate(json.loads(shaped.choices[0].text), SCHEMA)

            # presence_penalty, frequency_penalty and logit_bias reach the sampler.
            plain = {**ask, "max_tokens": 12, "logprobs": False, "top_logprobs": None}
            same = client.chat.completions.create(**plain).choices[0].message.content
            for penalty in ({"frequency_penalty": 2.0}, {"presence_penalty": 2.0}):
                other = client.chat.completions.create(**plain, **penalty).choices[0].message.content
                assert other != same, penalty
            token = tokenizer.encode("a", add_special_tokens=False)[0]
            biased = client.chat.completions.create(**ask, logit_bias={str(token): 100})
            assert {t.token for t in biased.choices[0].logprobs.content} == {tokenizer.decode([token])}
    finally:
        runtime.close()
