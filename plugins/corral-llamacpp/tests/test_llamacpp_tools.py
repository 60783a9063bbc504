"""Tools, structured output and log-probabilities through the llama.cpp driver.

The families' published chat templates are written into tiny GGUF models: the tools and the tool
results must come out through each template, and a chat with tools must answer (random weights: its
answer falls back to content); thinking templates send their thought as ``reasoning_content``. The real
Gemma answers a JSON schema, forced calls, log-probabilities (streamed too), penalties and stop strings
through the real ``openai`` client against a started server.
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


@pytest.fixture(params=sorted(__import__("tool_templates").FAMILIES))
def family_model(request, library, tmp_path):
    from factories import write_tiny_gguf
    from tool_templates import FAMILIES

    template, shown, result = FAMILIES[request.param]
    path = write_tiny_gguf(tmp_path / f"{request.param}.gguf", chat_template=template, context_length=8192)
    model = library.import_path(path).model
    with open_model(library, model.id, overrides={"n_ctx": 8192}) as handle:
        yield request.param, handle, shown, result


def test_family_templates_render_tools_and_results(family_model):
    family, handle, shown, result = family_model
    assert handle.tool_family == family
    prompt = handle.render([HISTORY[0]], tools=[WEATHER])
    assert shown in prompt and "get_weather" in prompt
    back = handle.render(HISTORY, tools=[WEATHER])
    assert result in back
    answer = handle.chat(HISTORY, tools=[WEATHER], max_tokens=8, temperature=0, seed=0)
    assert answer.finish_reason in ("stop", "length", "tool_calls")
    forced = handle.chat([HISTORY[0]], tools=[WEATHER], tool_choice="required", max_tokens=60, temperature=0,
                         seed=0)
    assert forced.finish_reason in ("tool_calls", "length")
    if forced.finish_reason == "tool_calls":
        assert forced.tool_calls[0].name == "get_weather"


def test_unsupported_schema_keyword_is_named(tiny, library):
    with open_model(library, tiny.id, overrides={"n_ctx": 256}) as handle:
        fmt = {"type": "json_schema", "json_schema": {"name": "n", "schema": {"type": "integer", "minimum": 1}}}
        with pytest.raises(InvalidRequest, match="'minimum'"):
            handle.chat([{"role": "user", "content": "x"}], response_format=fmt)


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
    library.update_settings("qwen3-off", {"thinking": False})
    with serving(library) as server:
        yield server


ASK_WHY = [{"role": "user", "content": "Why?"}]


def test_reasoning_and_the_thinking_switch_through_the_openai_client(thinkers):
    import openai

    client = openai.OpenAI(base_url=thinkers.url + "/v1", api_key="unused", max_retries=0)
    ask = {"messages": ASK_WHY, "max_tokens": 12, "temperature": 0, "seed": 0}
    answer = client.chat.completions.create(model="r1", **ask)
    message = answer.choices[0].message
    assert message.reasoning_content and not message.content
    chunks = list(client.chat.completions.create(model="r1", stream=True, **ask))
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert not "".join(d.content or "" for d in deltas)
    streamed = "".join(getattr(d, "reasoning_content", None) or "" for d in deltas)
    assert len([d for d in deltas if getattr(d, "reasoning_content", None)]) > 1
    assert streamed.strip() == message.reasoning_content

    def prompt_tokens(model: str, **extra) -> int:
        answer = client.chat.completions.create(model=model, **{**ask, "max_tokens": 2}, **extra)
        assert getattr(answer.choices[0].message, "reasoning_content", None) is None
        return answer.usage.prompt_tokens

    thinking = prompt_tokens("qwen3")
    assert prompt_tokens("qwen3", reasoning_effort="high") == thinking
    assert prompt_tokens("qwen3", reasoning_effort="none") > thinking
    assert prompt_tokens("qwen3-off") == prompt_tokens("qwen3", reasoning_effort="none")
    assert prompt_tokens("qwen3-off", reasoning_effort="low") == thinking  # the request decides
    with pytest.raises(openai.BadRequestError, match="reasoning_effort"):
        client.chat.completions.create(model="qwen3", reasoning_effort="max", **ask)


def test_reasoning_on_the_ollama_anthropic_and_responses_surfaces(thinkers):
    """The same thought as Ollama's ``thinking`` (and its ``thinking`` capability), Anthropic's thinking
    block and the Responses API's reasoning item; each surface's switch turns Qwen 3's thinking off."""
    import anthropic
    import ollama
    import openai

    local = ollama.Client(host=thinkers.url)
    assert "thinking" in local.show("r1").capabilities and "thinking" in local.show("qwen3").capabilities
    options = {"num_predict": 12, "temperature": 0, "seed": 0}
    said = local.chat("r1", messages=ASK_WHY, options=options, stream=False)
    assert said.message.thinking and not said.message.content
    pieces = list(local.chat("r1", messages=ASK_WHY, options=options, stream=True))
    assert "".join(p.message.thinking or "" for p in pieces).strip() == said.message.thinking
    assert not "".join(p.message.content or "" for p in pieces)
    on, off = (local.chat("qwen3", messages=ASK_WHY, options={**options, "num_predict": 2}, think=think)
               for think in (True, False))
    assert off.prompt_eval_count > on.prompt_eval_count

    claude = anthropic.Anthropic(base_url=thinkers.url, api_key="unused", max_retries=0)
    message = claude.messages.create(model="r1", max_tokens=12, messages=ASK_WHY, extra_body={"temperature": 0})
    assert [b.type for b in message.content] == ["thinking"] and message.content[0].thinking
    with claude.messages.stream(model="r1", max_tokens=12, messages=ASK_WHY, extra_body={"temperature": 0}) as stream:
        kinds = {e.delta.type for e in stream if e.type == "content_block_delta"}
        final = stream.get_final_message()
    assert kinds == {"thinking_delta"} and final.content[0].thinking == message.content[0].thinking
    on, off = (claude.messages.create(model="qwen3", max_tokens=2, messages=ASK_WHY, thinking=thinking)
               for thinking in ({"type": "enabled", "budget_tokens": 1024}, {"type": "disabled"}))
    assert off.usage.input_tokens > on.usage.input_tokens

    client = openai.OpenAI(base_url=thinkers.url + "/v1", api_key="unused", max_retries=0)
    response = client.responses.create(model="r1", input="Why?", max_output_tokens=12, temperature=0, store=False)
    items = [o for o in response.output if o.type == "reasoning"]
    assert items and items[0].content[0].text and not response.output_text
    on, off = (client.responses.create(model="qwen3", input="Why?", max_output_tokens=2, store=False,
                                       reasoning={"effort": effort}) for effort in ("medium", "none"))
    assert off.usage.input_tokens > on.usage.input_tokens


@pytest.mark.slow
def test_gemma_through_the_openai_client(gemma_library, tmp_path):
    import jsonschema
    import openai

    from corral.testing import Runtime, ServerThread
    from llamacpp_factories import GEMMA_SETTINGS

    gemma_library.update_settings("gemma", GEMMA_SETTINGS)
    runtime = Runtime(gemma_library)
    try:
        with ServerThread(runtime) as server:
            client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
            question = [{"role": "user", "content": "Give the capital of France and its population."}]
            schema = {"type": "object", "properties": {"city": {"type": "string"},
                                                       "population": {"type": "integer"}},
                      "required": ["city", "population"], "additionalProperties": False}
            answer = client.chat.completions.create(
                model="gemma", messages=question, temperature=0, seed=0, max_tokens=64,
                response_format={"type": "json_schema", "json_schema": {"name": "city", "schema": schema,
                                                                        "strict": True}})
            jsonschema.validate(json.loads(answer.choices[0].message.content), schema)

            asked = [{"role": "user", "content": "What is the weather in Paris?"}]
            named = {"type": "function", "function": {"name": "get_weather"}}
            called = client.chat.completions.create(model="gemma", messages=asked, tools=[WEATHER],
                                                    tool_choice=named, temperature=0, seed=0, max_tokens=64)
            choice = called.choices[0]
            assert choice.finish_reason == "tool_calls" and choice.message.content is None
            call = choice.message.tool_calls[0]
            assert call.function.name == "get_weather"
            jsonschema.validate(json.loads(call.function.arguments), WEATHER["function"]["parameters"])

            pieces, names, ids, reasons = [], set(), set(), []
            stream = client.chat.completions.create(model="gemma", messages=asked, tools=[WEATHER],
                                                    tool_choice=named, temperature=0, seed=0, max_tokens=64,
                                                    stream=True, stream_options={"include_usage": True})
            usage = None
            for chunk in stream:
                usage = chunk.usage or usage
                for c in chunk.choices:
                    reasons.append(c.finish_reason)
                    for t in c.delta.tool_calls or ():
                        ids.add(t.id) if t.id else None
                        names.add(t.function.name) if t.function.name else None
                        pieces.append(t.function.arguments or "")
            assert len([p for p in pieces if p]) > 1  # the arguments came in pieces
            assert "".join(pieces) == call.function.arguments and names == {"get_weather"} and len(ids) == 1
            assert reasons[-1] == "tool_calls" and usage.completion_tokens > 0 and usage.prompt_tokens > 0

            lp = client.chat.completions.create(model="gemma", messages=question, max_tokens=5, temperature=0,
                                                seed=0, logprobs=True, top_logprobs=3)
            content = lp.choices[0].logprobs.content
            assert len(content) == lp.usage.completion_tokens or len(content) >= 1
            assert all(t.logprob <= 0 and len(t.top_logprobs) == 3 for t in content)
            text = client.completions.create(model="gemma", prompt="The sky is", max_tokens=4, logprobs=2,
                                             temperature=0, seed=0)
            assert all(v <= 0 for v in text.choices[0].logprobs.token_logprobs)
            # Streamed, each token's log-probability rides on its chunk: the same tokens and values.
            chunks = list(client.chat.completions.create(model="gemma", messages=question, max_tokens=5,
                                                         temperature=0, seed=0, logprobs=True, top_logprobs=3,
                                                         stream=True))
            streamed = [t for c in chunks if c.choices and c.choices[0].logprobs
                        for t in c.choices[0].logprobs.content]
            assert [(t.token, t.logprob) for t in streamed] == [(t.token, t.logprob) for t in content]
            assert all(len(t.top_logprobs) == 3 for t in streamed)
            pieces = list(client.completions.create(model="gemma", prompt="The sky is", max_tokens=4, logprobs=2,
                                                    temperature=0, seed=0, stream=True))
            tokens = [tok for p in pieces if p.choices[0].logprobs for tok in p.choices[0].logprobs.tokens]
            assert "".join(tokens) == text.choices[0].text
            assert all(len(p.choices[0].logprobs.top_logprobs[0]) == 2 for p in pieces if p.choices[0].logprobs)

            # Penalties reach the sampler; max_completion_tokens is max_tokens; at most four stop strings.
            repeat = [{"role": "user", "content": "Write the word cat five times."}]
            plain = client.chat.completions.create(model="gemma", messages=repeat, max_tokens=16, temperature=0)
            for penalty in ({"frequency_penalty": 2.0}, {"presence_penalty": 2.0}):
                other = client.chat.completions.create(model="gemma", messages=repeat, max_tokens=16,
                                                       temperature=0, **penalty)
                assert other.choices[0].message.content != plain.choices[0].message.content, penalty
            short = client.chat.completions.create(model="gemma", messages=repeat, max_completion_tokens=3,
                                                   temperature=0)
            assert short.usage.completion_tokens == 3 and short.choices[0].finish_reason == "length"
            cut = client.chat.completions.create(model="gemma", messages=repeat, max_tokens=16, temperature=0,
                                                 stop=["#", "%", "@", "cat"])
            assert cut.choices[0].message.content == plain.choices[0].message.content.split("cat")[0]
            with pytest.raises(openai.BadRequestError, match="at most 4"):
                client.chat.completions.create(model="gemma", messages=repeat, stop=list("abcde"))

            with pytest.raises(openai.BadRequestError, match="store"):
                client.chat.completions.create(model="gemma", messages=question, store=True)
            with pytest.raises(openai.BadRequestError, match="the prompt is .* tokens but the context holds"):
                client.chat.completions.create(model="gemma", messages=[
                    {"role": "user", "content": "Paris is lovely. " * 400}])
            several = client.chat.completions.create(model="gemma", messages=question, n=2, max_tokens=4, seed=1)
            assert len(several.choices) == 2
    finally:
        runtime.close()
        gemma_library.update_settings("gemma", {}, unset=list(GEMMA_SETTINGS))
