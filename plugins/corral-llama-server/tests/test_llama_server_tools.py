"""Tool calls and reasoning through the llama-server driver, read by Corral's parsers (corral.tools).

The families' published chat templates are written into tiny GGUF models: the tools must reach the
prompt through each template and a conversation with tool turns must answer; thinking templates send
their thought as ``reasoning_content`` and follow the thinking switch. The real Gemma makes forced calls
(``required`` and a named function), whole and streamed, through the official ``openai`` and ``ollama``
clients against a started server.
"""

from __future__ import annotations

import json

import pytest

from corral.api import InvalidRequest
from corral.testing import open_model

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
                   "required": ["city", "unit"], "additionalProperties": False}}}  # fmt: skip
HISTORY = [
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "abc123def", "type": "function", "function": {"name": "get_weather",
                                                             "arguments": '{"city": "Paris", "unit": "c"}'}}]},
    {"role": "tool", "tool_call_id": "abc123def", "content": "18 C"},
]
GREEDY = {"temperature": 0, "seed": 0}


@pytest.fixture(params=sorted(__import__("tool_templates").FAMILIES))
def family_model(request, library, tmp_path):
    from factories import write_tiny_gguf
    from tool_templates import FAMILIES

    template = FAMILIES[request.param][0]
    path = write_tiny_gguf(tmp_path / f"{request.param}.gguf", chat_template=template, context_length=8192)
    model = library.import_path(path).model
    with open_model(library, model.id, overrides={"n_ctx": 4096, "parallel": 1}) as handle:
        yield request.param, handle


def test_family_templates_show_tools_and_take_tool_turns(family_model):
    family, handle = family_model
    assert handle.tool_family == family
    bare = handle.chat([HISTORY[0]], max_tokens=1, **GREEDY)
    shown = handle.chat([HISTORY[0]], tools=[WEATHER], max_tokens=1, **GREEDY)
    assert shown.prompt_tokens > bare.prompt_tokens + 20  # the function's schema is in the prompt
    none = handle.chat([HISTORY[0]], tools=[WEATHER], tool_choice="none", max_tokens=1, **GREEDY)
    assert none.prompt_tokens == bare.prompt_tokens
    answer = handle.chat(HISTORY, tools=[WEATHER], max_tokens=8, **GREEDY)
    assert answer.finish_reason in ("stop", "length", "tool_calls")
    assert answer.prompt_tokens > shown.prompt_tokens  # the call and its result are in the prompt


def test_tools_are_checked_and_need_a_chat(library, tiny):
    with open_model(library, tiny.id, overrides={"n_ctx": 256, "parallel": 1}) as handle:
        with pytest.raises(InvalidRequest, match="not among the request's tools"):
            handle.chat([HISTORY[0]], tools=[WEATHER], tool_choice={"type": "function", "function": {"name": "f"}})
        with pytest.raises(InvalidRequest, match="reasoning_effort"):
            handle.chat([HISTORY[0]], reasoning_effort="max")
        with pytest.raises(InvalidRequest, match="tools need a chat"):
            handle.complete("x", tools=[WEATHER])
        fmt = {"type": "json_object"}
        with pytest.raises(InvalidRequest, match="response_format cannot be combined"):
            handle.chat([HISTORY[0]], tools=[WEATHER], tool_choice="required", response_format=fmt)


@pytest.fixture
def thinkers(library, tmp_path):
    """A server over tiny models with thinking templates: DeepSeek-R1's opens the thought in its prompt (a
    random-weight answer never closes it, so all of it is reasoning); Qwen 3's reads ``enable_thinking``
    (when off, the prompt closes an empty thought, a few tokens longer), once with ``thinking=false`` saved."""
    from corral.testing import serving
    from factories import write_tiny_gguf
    from tool_templates import DEEPSEEK_R1, QWEN3

    for name, template in (("r1", DEEPSEEK_R1), ("qwen3", QWEN3), ("qwen3-off", QWEN3)):
        library.import_path(write_tiny_gguf(tmp_path / f"{name}.gguf", chat_template=template), name=name)
        library.update_settings(name, {"n_ctx": 512, "parallel": 1})
    library.update_settings("qwen3-off", {"thinking": False})
    with serving(library) as server:
        yield server


def test_reasoning_and_the_thinking_switch_through_the_openai_client(thinkers):
    import openai

    client = openai.OpenAI(base_url=thinkers.url + "/v1", api_key="unused", max_retries=0)
    ask = {"messages": [{"role": "user", "content": "Why?"}], "max_tokens": 12, **GREEDY}
    answer = client.chat.completions.create(model="r1", **ask)
    message = answer.choices[0].message
    assert message.reasoning_content and not message.content
    chunks = list(client.chat.completions.create(model="r1", stream=True, **ask))
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert not "".join(d.content or "" for d in deltas)
    assert len([d for d in deltas if getattr(d, "reasoning_content", None)]) > 1
    assert "".join(getattr(d, "reasoning_content", None) or "" for d in deltas).strip() == message.reasoning_content

    def prompt_tokens(model: str, **extra) -> int:
        answer = client.chat.completions.create(model=model, **{**ask, "max_tokens": 2}, **extra)
        return answer.usage.prompt_tokens

    thinking = prompt_tokens("qwen3")
    assert prompt_tokens("qwen3", reasoning_effort="high") == thinking
    assert prompt_tokens("qwen3", reasoning_effort="none") > thinking
    assert prompt_tokens("qwen3-off") == prompt_tokens("qwen3", reasoning_effort="none")
    assert prompt_tokens("qwen3-off", reasoning_effort="low") == thinking  # the request decides
    with pytest.raises(openai.BadRequestError, match="reasoning_effort"):
        client.chat.completions.create(model="qwen3", reasoning_effort="max", **ask)


ASKED = [{"role": "user", "content": "What is the weather in Paris?"}]
NAMED = {"type": "function", "function": {"name": "get_weather"}}


@pytest.fixture(scope="module")
def gemma_server(gemma_library, tmp_path_factory):
    """The real Gemma behind a started server, in a runner process of its own as ``corral serve`` runs it:
    the engine's native code cannot take the test process with it, and a runner that ends says why."""
    from corral.testing import RunnerProcesses, serving

    gemma_library.update_settings("gemma", {"n_ctx": 256, "threads": 1, "threads_batch": 1, "parallel": 2})
    with serving(gemma_library, executor=RunnerProcesses(log_dir=tmp_path_factory.mktemp("runners"))) as server:
        yield server


def _streamed_calls(stream) -> tuple[list[dict], list]:
    """The calls a stream of OpenAI chunks assembles (by index), and its finish reasons."""
    calls: dict[int, dict] = {}
    reasons = []
    for chunk in stream:
        for choice in chunk.choices:
            reasons.append(choice.finish_reason)
            assert not choice.delta.content
            for piece in choice.delta.tool_calls or ():
                call = calls.setdefault(piece.index, {"id": None, "name": None, "arguments": ""})
                call["id"] = piece.id or call["id"]
                call["name"] = (piece.function.name if piece.function else None) or call["name"]
                call["arguments"] += (piece.function.arguments if piece.function else None) or ""
    return [calls[i] for i in sorted(calls)], reasons


@pytest.mark.slow
def test_gemma_makes_forced_calls_through_the_openai_client(gemma_server):
    import jsonschema
    import openai

    client = openai.OpenAI(base_url=gemma_server.url + "/v1", api_key="unused", max_retries=0)
    ask = {"model": "gemma", "messages": ASKED, "tools": [WEATHER], "max_tokens": 64, **GREEDY}
    for choice in ("required", NAMED):
        called = client.chat.completions.create(**ask, tool_choice=choice)
        answer = called.choices[0]
        assert answer.finish_reason == "tool_calls" and answer.message.content is None
        (call,) = answer.message.tool_calls
        assert call.function.name == "get_weather" and call.id.startswith("call_")
        arguments = json.loads(call.function.arguments)
        jsonschema.validate(arguments, WEATHER["function"]["parameters"])
        assert arguments["city"] == "Paris"

        calls, reasons = _streamed_calls(client.chat.completions.create(**ask, tool_choice=choice, stream=True))
        assert reasons[-1] == "tool_calls"
        assert [(c["name"], json.loads(c["arguments"])) for c in calls] == [("get_weather", arguments)]
        assert calls[0]["id"].startswith("call_")
    free = client.chat.completions.create(**ask, tool_choice="auto").choices[0]
    assert free.finish_reason in ("stop", "length", "tool_calls")


@pytest.mark.slow
def test_gemma_tool_calls_through_the_ollama_client(gemma_server):
    """Ollama's /api/chat: a call comes back as message.tool_calls with object arguments, whole and
    streamed. Ollama's API has no tool_choice, so the call is held to a call's JSON by ``format``."""
    import ollama

    local = ollama.Client(host=gemma_server.url)
    said = local.chat("gemma", messages=ASKED, tools=[WEATHER], options={"num_predict": 64, **GREEDY},
                      stream=False)
    assert said.message.role == "assistant"
    schema = {"type": "object", "properties": {"name": {"const": "get_weather"},
                                               "arguments": WEATHER["function"]["parameters"]},
              "required": ["name", "arguments"], "additionalProperties": False}
    forced = local.chat("gemma", messages=ASKED, tools=[WEATHER], format=schema,
                        options={"num_predict": 64, **GREEDY})
    (call,) = forced.message.tool_calls
    assert call.function.name == "get_weather" and call.function.arguments["city"] == "Paris"
    pieces = list(local.chat("gemma", messages=ASKED, tools=[WEATHER], format=schema, stream=True,
                             options={"num_predict": 64, **GREEDY}))
    streamed = [c for p in pieces for c in (p.message.tool_calls or ())]
    assert [(c.function.name, dict(c.function.arguments)) for c in streamed] == \
        [("get_weather", dict(call.function.arguments))]
