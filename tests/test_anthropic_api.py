"""Anthropic's Messages API (/v1/messages) driven by the official ``anthropic`` client against a started
server holding the real Gemma 3 270M (llama.cpp): plain and streamed messages, a forced tool_use and its
tool_result round trip, stop sequences, count_tokens, the key as x-api-key, and Anthropic-shaped errors."""

from __future__ import annotations

import json

import pytest

anthropic = pytest.importorskip("anthropic")
httpx = pytest.importorskip("httpx")
pytest.importorskip("corral_llamacpp")

KEY = "anthropic-test-key"
WEATHER = {"name": "get_weather", "description": "The weather in a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                            "required": ["city"], "additionalProperties": False}}
ASK = [{"role": "user", "content": "Name a colour."}]
#: Newer anthropic clients have no sampling arguments; the server still takes Anthropic's temperature.
GREEDY = {"extra_body": {"temperature": 0}}


@pytest.fixture(scope="module")
def server(tmp_path_factory, gemma_path):
    """One server for the module: the real Gemma, an API key."""
    from gemma_served import gemma_library, serve

    with gemma_library(tmp_path_factory.mktemp("anthropic-home"), gemma_path) as library, serve(library, KEY) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server):
    # The anthropic client sends its key as x-api-key.
    return anthropic.Anthropic(base_url=server.url, api_key=KEY, max_retries=0, timeout=300)


def test_message_and_the_same_message_streamed(client):
    message = client.messages.create(model="gemma", max_tokens=8, messages=ASK, **GREEDY,
                                     system="You answer in one word.")
    assert message.type == "message" and message.role == "assistant" and message.model == "gemma"
    assert message.id.startswith("msg_") and message.content[0].type == "text" and message.content[0].text.strip()
    assert message.stop_reason in ("end_turn", "max_tokens")
    assert message.usage.input_tokens > 0 and 0 < message.usage.output_tokens <= 8

    with client.messages.stream(model="gemma", max_tokens=8, messages=ASK, **GREEDY,
                                system="You answer in one word.") as stream:
        texts = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(texts) > 1 and "".join(texts) == message.content[0].text
    assert final.content[0].text == message.content[0].text and final.stop_reason == message.stop_reason
    assert final.usage.output_tokens == message.usage.output_tokens
    assert final.usage.input_tokens == message.usage.input_tokens


def test_stream_events_come_in_anthropic_order(server):
    body = {"model": "gemma", "max_tokens": 4, "messages": ASK, "temperature": 0, "stream": True}
    with httpx.Client(base_url=server.url, timeout=300) as http, \
            http.stream("POST", "/v1/messages", json=body, headers={"x-api-key": KEY}) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    names = [line[len("event: "):] for line in lines if line.startswith("event: ")]
    data = [json.loads(line[len("data: "):]) for line in lines if line.startswith("data: ")]
    assert names == [d["type"] for d in data]  # every event named as its data's type
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert set(names[3:-3]) == {"content_block_delta"}
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert data[0]["message"]["content"] == [] and data[1]["content_block"] == {"type": "text", "text": ""}
    assert data[-2]["usage"]["output_tokens"] <= 4 and data[-2]["delta"]["stop_reason"] in ("end_turn", "max_tokens")


def test_forced_tool_use_then_its_result(client):
    import jsonschema

    ask = [{"role": "user", "content": "What is the weather in Paris?"}]
    forced = {"type": "tool", "name": "get_weather"}
    message = client.messages.create(model="gemma", max_tokens=40, messages=ask, tools=[WEATHER],
                                     tool_choice=forced, **GREEDY)
    assert message.stop_reason == "tool_use"
    use = [b for b in message.content if b.type == "tool_use"][0]
    assert use.name == "get_weather" and use.id
    jsonschema.validate(use.input, WEATHER["input_schema"])

    with client.messages.stream(model="gemma", max_tokens=40, messages=ask, tools=[WEATHER], tool_choice=forced,
                                **GREEDY) as stream:
        kinds = [e.delta.type for e in stream if e.type == "content_block_delta"]
        streamed = stream.get_final_message()
    assert "input_json_delta" in kinds and streamed.stop_reason == "tool_use"
    assert [b.input for b in streamed.content if b.type == "tool_use"] == [use.input]

    # The call and its result go back; the model answers in text.
    history = ask + [{"role": "assistant", "content": [b.model_dump() for b in message.content]},
                     {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id,
                                                   "content": "18 C and sunny"}]}]
    answer = client.messages.create(model="gemma", max_tokens=6, messages=history, tools=[WEATHER], **GREEDY)
    assert answer.content and answer.usage.input_tokens > message.usage.input_tokens


def test_stop_sequence_ends_the_answer_and_is_named(client):
    count = [{"role": "user", "content": "Count from 1 to 20, separated by commas."}]
    free = client.messages.create(model="gemma", max_tokens=24, messages=count, **GREEDY)
    text = free.content[0].text
    stop = next((c for c in ("5", ",", " ") if c in text[1:]), None)  # one the text holds after its start
    assert stop is not None, text
    cut = client.messages.create(model="gemma", max_tokens=24, messages=count, **GREEDY, stop_sequences=[stop])
    assert cut.stop_reason == "stop_sequence" and cut.stop_sequence == stop
    assert cut.content[0].text == text[:text.index(stop, 1)] or text.index(stop) == 0
    with client.messages.stream(model="gemma", max_tokens=24, messages=count, **GREEDY,
                                stop_sequences=[stop]) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "stop_sequence" and final.stop_sequence == stop
    assert [b.model_dump() for b in final.content] == [b.model_dump() for b in cut.content]


def test_output_config_format_gives_json_of_the_schema(client):
    import jsonschema

    schema = {"type": "object", "properties": {"colour": {"type": "string"}}, "required": ["colour"],
              "additionalProperties": False}
    message = client.messages.create(model="gemma", max_tokens=24, messages=ASK, **GREEDY,
                                     output_config={"format": {"type": "json_schema", "schema": schema}})
    jsonschema.validate(json.loads(message.content[0].text), schema)


def test_count_tokens_matches_what_a_message_reads(client):
    counted = client.messages.count_tokens(model="gemma", messages=ASK, system="You answer in one word.")
    message = client.messages.create(model="gemma", max_tokens=2, messages=ASK, **GREEDY,
                                     system="You answer in one word.")
    assert counted.input_tokens == message.usage.input_tokens > 0
    with_tools = client.messages.count_tokens(model="gemma", messages=ASK, tools=[WEATHER])
    assert with_tools.input_tokens > client.messages.count_tokens(model="gemma", messages=ASK).input_tokens


def test_keys_and_errors_have_anthropic_shapes(server, client):
    with httpx.Client(base_url=server.url, timeout=60) as http:
        body = {"model": "gemma", "max_tokens": 2, "messages": ASK}
        missing = http.post("/v1/messages", json=body)
        assert missing.status_code == 401 and missing.json()["error"]["type"] == "authentication_error"
        assert missing.json()["type"] == "error" and "x-api-key" in missing.json()["error"]["message"]
        assert http.post("/v1/messages", json=body, headers={"x-api-key": "wrong"}).status_code == 401
        bearer = http.post("/v1/messages", json=body, headers={"Authorization": f"Bearer {KEY}"})
        assert bearer.status_code == 200 and bearer.json()["type"] == "message"
        odd = http.post("/v1/messages", json={**body, "service_tier": "auto"}, headers={"x-api-key": KEY})
        assert odd.status_code == 400
        assert odd.json() == {"type": "error", "error": {"type": "invalid_request_error", "message": odd.json()[
            "error"]["message"]}} and "'service_tier'" in odd.json()["error"]["message"]
        # Anthropic's clients must give max_tokens; an SSE stream ends in message_stop.
        assert "max_tokens" in http.post("/v1/messages", json={"model": "gemma", "messages": ASK},
                                         headers={"x-api-key": KEY}).json()["error"]["message"]
    with pytest.raises(anthropic.NotFoundError) as missing:
        client.messages.create(model="no-such-model", max_tokens=2, messages=ASK)
    assert missing.value.body["error"]["type"] == "not_found_error"
    with pytest.raises(anthropic.BadRequestError, match="web_search"):
        client.messages.create(model="gemma", max_tokens=2, messages=ASK,
                               tools=[{"type": "web_search_20250305", "name": "web_search"}])
    with pytest.raises(anthropic.BadRequestError, match="document"):
        client.messages.create(model="gemma", max_tokens=2, messages=[{"role": "user", "content": [
            {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "x"}}]}])


def test_blocks_become_the_messages_drivers_take():
    from corral.server.anthropic_routes import read_messages, read_tool_fields

    body = {"system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "What is this?"},
                                             {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                                                          "data": "iVBORw0KGgo="}}]},
                {"role": "assistant", "content": [{"type": "thinking", "thinking": "hm", "signature": "s"},
                                                  {"type": "tool_use", "id": "toolu_1", "name": "look",
                                                   "input": {"q": "x"}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "is_error": True,
                                              "content": [{"type": "text", "text": "no"}]},
                                             {"type": "text", "text": "Go on."}]}]}
    assert read_messages(body) == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "What is this?"},
                                     {"type": "image_url",
                                      "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "toolu_1", "type": "function", "function": {"name": "look", "arguments": json.dumps({"q": "x"})}}]},
        {"role": "tool", "tool_call_id": "toolu_1", "content": "Error: no"},
        {"role": "user", "content": "Go on."},
    ]
    tools = read_tool_fields({"tools": [WEATHER], "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
                              "thinking": {"type": "disabled"}})
    assert tools["tool_choice"] == "required" and tools["parallel_tool_calls"] is False
    assert tools["reasoning_effort"] == "none"
    assert tools["tools"][0]["function"]["parameters"] == WEATHER["input_schema"]
