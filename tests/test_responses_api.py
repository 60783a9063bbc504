"""OpenAI's Responses API (/v1/responses) driven by the official ``openai`` client against a started server
holding the real Gemma 3 270M (llama.cpp): text and item input, streaming (raw events and the client's
accumulating stream), a forced function call and its function_call_output round trip, previous_response_id
continued from the library database, text.format JSON schema, and unsupported fields named."""

from __future__ import annotations

import json

import pytest

openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")
pytest.importorskip("corral_llamacpp")

KEY = "responses-test-key"
WEATHER = {"type": "function", "name": "get_weather", "description": "The weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
                          "additionalProperties": False}}


@pytest.fixture(scope="module")
def library(tmp_path_factory, gemma_path):
    from gemma_served import gemma_library

    with gemma_library(tmp_path_factory.mktemp("responses-home"), gemma_path) as lib:
        yield lib


@pytest.fixture(scope="module")
def server(library):
    from gemma_served import serve

    with serve(library, KEY) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0, timeout=300)


def test_text_input_and_the_same_streamed(client):
    answer = client.responses.create(model="gemma", input="Name a colour.", instructions="Answer in one word.",
                                     max_output_tokens=8, temperature=0)
    assert answer.object == "response" and answer.id.startswith("resp_") and answer.model == "gemma"
    assert answer.status in ("completed", "incomplete") and answer.output_text.strip()
    assert answer.output[0].type == "message" and answer.output[0].content[0].type == "output_text"
    assert answer.usage.input_tokens > 0 and 0 < answer.usage.output_tokens <= 8
    assert answer.usage.total_tokens == answer.usage.input_tokens + answer.usage.output_tokens

    events = list(client.responses.create(model="gemma", input="Name a colour.", instructions="Answer in one word.",
                                          max_output_tokens=8, temperature=0, stream=True))
    kinds = [e.type for e in events]
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          "response.completed" if answer.status == "completed" else "response.incomplete"]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert len(deltas) > 1 and "".join(deltas) == answer.output_text
    assert events[-1].response.output_text == answer.output_text
    assert events[-1].response.usage.output_tokens == answer.usage.output_tokens


def test_a_function_call_and_its_output(client):
    import jsonschema

    asked = [{"role": "user", "content": "What is the weather in Paris?"}]
    called = client.responses.create(model="gemma", input=asked, tools=[WEATHER], max_output_tokens=40,
                                     tool_choice={"type": "function", "name": "get_weather"}, temperature=0,
                                     store=False)
    calls = [o for o in called.output if o.type == "function_call"]
    assert calls and calls[0].name == "get_weather" and calls[0].call_id and called.status == "completed"
    jsonschema.validate(json.loads(calls[0].arguments), WEATHER["parameters"])

    with client.responses.stream(model="gemma", input=asked, tools=[WEATHER], max_output_tokens=40,
                                 tool_choice="required", temperature=0, store=False) as stream:
        pieces = [e.delta for e in stream if e.type == "response.function_call_arguments.delta"]
        streamed = stream.get_final_response()  # the client's accumulating stream rebuilt the response
    call = [o for o in streamed.output if o.type == "function_call"][0]
    assert pieces and "".join(pieces) == call.arguments and call.name == "get_weather"

    # Round trip: the call and its output go back as items; the model answers in text.
    items = asked + [{"type": "function_call", "call_id": calls[0].call_id, "name": "get_weather",
                      "arguments": calls[0].arguments},
                     {"type": "function_call_output", "call_id": calls[0].call_id, "output": "18 C and sunny"}]
    answer = client.responses.create(model="gemma", input=items, tools=[WEATHER], max_output_tokens=12,
                                     temperature=0, store=False)
    assert answer.output and answer.usage.input_tokens > called.usage.input_tokens


def test_previous_response_id_continues_a_kept_answer(client, library):
    first = client.responses.create(model="gemma", input="My name is Ada. Say hello.", max_output_tokens=6,
                                    temperature=0)
    kept = client.responses.retrieve(first.id)
    assert kept.id == first.id and kept.output_text == first.output_text
    follow = client.responses.create(model="gemma", previous_response_id=first.id, input="What is my name?",
                                     max_output_tokens=6, temperature=0)
    assert follow.previous_response_id == first.id
    # The continuation read the whole conversation: the first prompt, its answer and the new question.
    alone = client.responses.create(model="gemma", input="What is my name?", max_output_tokens=6, temperature=0,
                                    store=False)
    assert follow.usage.input_tokens > alone.usage.input_tokens + first.usage.input_tokens - 5
    record = library.store.get_response(follow.id, max_age=3600)
    assert [m["role"] for m in record["history"]] == ["user", "assistant", "user", "assistant"]
    # store: false keeps nothing, and an unknown or deleted id is a 404 naming it.
    with pytest.raises(openai.NotFoundError, match=alone.id):
        client.responses.retrieve(alone.id)
    client.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError, match=first.id):
        client.responses.create(model="gemma", previous_response_id=first.id, input="Hi", max_output_tokens=2)


def test_kept_answers_are_pruned_by_age_and_count(library):
    store = library.store
    for i in range(5):
        store.save_response(f"resp_{i}", {"response": {"n": i}, "history": []}, max_age=3600, keep=3)
    assert [store.get_response(f"resp_{i}", max_age=3600) is not None for i in range(5)] == [False, False] + [True] * 3
    assert store.get_response("resp_4", max_age=0) is None  # older than the age asked
    store.save_response("resp_new", {"response": {}, "history": []}, max_age=0, keep=10)
    assert store.get_response("resp_4", max_age=3600) is None  # an age of 0 pruned the older ones


def test_text_format_json_schema(client):
    import jsonschema

    schema = {"type": "object", "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
              "required": ["city", "population"], "additionalProperties": False}
    answer = client.responses.create(
        model="gemma", input="Give the capital of France and its population.", max_output_tokens=48,
        temperature=0, store=False,
        text={"format": {"type": "json_schema", "name": "city", "schema": schema, "strict": True}})
    jsonschema.validate(json.loads(answer.output_text), schema)
    with pytest.raises(openai.BadRequestError, match="minimum"):
        client.responses.create(model="gemma", input="x", text={"format": {
            "type": "json_schema", "name": "n", "schema": {"type": "integer", "minimum": 1}}})


def test_unsupported_fields_are_named(client):
    with pytest.raises(openai.BadRequestError, match="'background'"):
        client.responses.create(model="gemma", input="Hi", background=True)
    with pytest.raises(openai.BadRequestError, match="web_search"):
        client.responses.create(model="gemma", input="Hi", tools=[{"type": "web_search"}])
    with pytest.raises(openai.BadRequestError, match="input_file"):
        client.responses.create(model="gemma", input=[{"role": "user", "content": [
            {"type": "input_file", "file_id": "file-1"}]}])
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=str(client.base_url), api_key="wrong", max_retries=0).responses.create(
            model="gemma", input="Hi")


def test_items_become_the_messages_drivers_take():
    from corral.server.responses_routes import read_input

    assert read_input([
        {"role": "developer", "content": "Be brief."},
        {"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "Look: "},
            {"type": "input_image", "image_url": "data:image/png;base64,AA"}]},
        {"type": "reasoning", "id": "rs_1", "summary": []},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Calling."}]},
        {"type": "function_call", "call_id": "call_1", "name": "look", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_1", "output": "a cat"},
    ]) == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Look: "},
                                     {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}]},
        {"role": "assistant", "content": "Calling.", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "look", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "a cat"},
    ]
