"""corral.tools: tool-call parsing per family on recorded model outputs (malformed ones included),
streamed deltas reassembling to the same calls, reasoning split off, request and schema checks."""

from __future__ import annotations

import json

import pytest

from corral.errors import InvalidRequest
from corral.tools import (
    AnswerShape,
    ReasoningStream,
    ToolCallStream,
    call_schema,
    check_schema,
    family_of,
    parse_tool_calls,
    plain_tool_messages,
    read_response_format,
    read_tools,
    split_reasoning,
    template_messages,
)

NAMES = {"get_weather", "get_time"}
PARIS = '{"city": "Paris", "unit": "c"}'

#: (family, what a model of that family wrote, content left, calls as (name, arguments)).
RECORDED = [
    ("hermes", f'<tool_call>\n{{"name": "get_weather", "arguments": {PARIS}}}\n</tool_call>', "",
     [("get_weather", PARIS)]),
    ("hermes", f'Let me check.\n<tool_call>\n{{"name": "get_weather", "arguments": {PARIS}}}\n</tool_call>\n'
               '<tool_call>\n{"name": "get_time", "arguments": {"zone": "CET"}}\n</tool_call>', "Let me check.",
     [("get_weather", PARIS), ("get_time", '{"zone": "CET"}')]),
    ("llama3", f'{{"name": "get_weather", "parameters": {PARIS}}}', "", [("get_weather", PARIS)]),
    ("llama3", f'<|python_tag|>{{"name": "get_weather", "parameters": {PARIS}}}', "", [("get_weather", PARIS)]),
    ("llama3", '<|python_tag|>get_time.call(zone="CET")', "", [("get_time", '{"zone": "CET"}')]),
    ("mistral", f'[TOOL_CALLS] [{{"name": "get_weather", "arguments": {PARIS}}}]', "", [("get_weather", PARIS)]),
    ("mistral", f'[TOOL_CALLS]get_weather[ARGS]{PARIS}', "", [("get_weather", PARIS)]),
    ("mistral", f'[{{"name": "get_weather", "arguments": {PARIS}}}]', "", [("get_weather", PARIS)]),  # marker dropped
    ("deepseek", "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n"
                 f"{PARIS}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>", "", [("get_weather", PARIS)]),
    ("deepseek", f"<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{PARIS}<｜tool▁call▁end｜>"
                 "<｜tool▁calls▁end｜>", "", [("get_weather", PARIS)]),
    ("gemma", '```tool_code\nget_weather(city="Paris", unit="c")\n```', "", [("get_weather", PARIS)]),
    ("gemma", "<start_function_call>call:get_weather{city:<escape>Paris<escape>,unit:<escape>c<escape>}"
              "<end_function_call>", "", [("get_weather", PARIS)]),
    ("gemma", f'```json\n{{"name": "get_weather", "arguments": {PARIS}}}\n```', "", [("get_weather", PARIS)]),
    ("json", f'{{"name": "get_weather", "arguments": {PARIS}}}', "", [("get_weather", PARIS)]),
    ("json", f'[{{"name": "get_weather", "arguments": {PARIS}}}, {{"name": "get_time", "arguments": {{}}}}]', "",
     [("get_weather", PARIS), ("get_time", "{}")]),
]

#: Broken or foreign answers: all of it stays content, nothing is half-parsed.
MALFORMED = [
    ("hermes", '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Par'),  # cut by max_tokens
    ("hermes", '<tool_call>\nnot json at all\n</tool_call>'),
    ("hermes", '<tool_call>\n{"name": "launch_rockets", "arguments": {}}\n</tool_call>'),  # not offered
    ("llama3", '{"city": "Paris"}'),  # JSON, but not a call
    ("llama3", '<|python_tag|>import os; os.system("rm -rf /")'),
    ("mistral", '[TOOL_CALLS] [{"name": "get_weather", "arguments": "oops"'),
    ("deepseek", "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n{"),
    ("gemma", '```tool_code\nget_weather(__import__("os").system("x"))\n```'),
    ("json", '{"name": "get_weather", "arguments": [1, 2]}'),
    ("json", "Paris is the capital of France."),
]


@pytest.mark.parametrize("family, text, content, calls", RECORDED)
def test_recorded_outputs_parse_per_family(family, text, content, calls):
    parsed = parse_tool_calls(text, family, NAMES)
    assert parsed.content == content
    assert [(c.name, json.loads(c.arguments)) for c in parsed.calls] == [(n, json.loads(a)) for n, a in calls]
    assert all(c.id for c in parsed.calls)
    for marker in ("<tool_call>", "[TOOL_CALLS]", "<|python_tag|>", "tool▁call", "tool_code"):
        assert marker not in parsed.content  # no raw markup leaks into content


@pytest.mark.parametrize("family, text", MALFORMED)
def test_malformed_outputs_fall_back_to_content(family, text):
    parsed = parse_tool_calls(text, family, NAMES)
    assert parsed.calls == () and parsed.content == text


def _stream(family: str, text: str, size: int):
    stream = ToolCallStream(family, NAMES)
    content, calls = "", {}
    for i in range(0, len(text), size):
        piece, deltas = stream.feed(text[i:i + size])
        content += piece
        for d in deltas:
            call = calls.setdefault(d.index, {"id": d.id, "name": d.name, "arguments": ""})
            call["arguments"] += d.arguments
    piece, deltas, final = stream.close()
    content += piece
    for d in deltas:
        call = calls.setdefault(d.index, {"id": d.id, "name": d.name, "arguments": ""})
        call["arguments"] += d.arguments
    return content, [calls[i] for i in sorted(calls)], final


@pytest.mark.parametrize("size", [1, 3, 1000])
@pytest.mark.parametrize("family, text, content, calls", RECORDED)
def test_streamed_deltas_reassemble_to_the_same_calls(family, text, content, calls, size):
    streamed, assembled, final = _stream(family, text, size)
    whole = parse_tool_calls(text, family, NAMES)
    assert [(c["name"], c["arguments"]) for c in assembled] == [(c.name, c.arguments) for c in whole.calls]
    assert [c["id"] for c in assembled] == [c.id for c in final]
    assert streamed.strip() == content


def test_arguments_stream_in_pieces_while_they_are_written():
    text = f'<tool_call>\n{{"name": "get_weather", "arguments": {PARIS}}}\n</tool_call>'
    stream = ToolCallStream("hermes", NAMES)
    pieces = [d.arguments for i in range(len(text)) for d in stream.feed(text[i])[1] if d.arguments]
    assert len(pieces) > 5 and "".join(pieces) == PARIS


@pytest.mark.parametrize("family, text", MALFORMED)
def test_streamed_malformed_outputs_never_crash(family, text):
    content, calls, final = _stream(family, text, 2)
    if not final:
        assert content == text


def test_family_is_read_from_the_template():
    assert family_of("{{ '<tool_call>' }}") == "hermes"
    assert family_of("[AVAILABLE_TOOLS] [TOOL_CALLS]") == "mistral"
    assert family_of("<｜tool▁calls▁begin｜>") == "deepseek"
    assert family_of("<|start_header_id|>ipython<|end_header_id|>") == "llama3"
    assert family_of("<start_of_turn>") == "gemma"
    assert family_of(None) == "json"


def test_reasoning_is_split_off_whole_and_streamed():
    assert split_reasoning("<think>\nLet me see.\n</think>\n\nParis.") == ("Let me see.", "Paris.")
    assert split_reasoning("Let me see.</think>Paris.") == ("Let me see.", "Paris.")  # the template opened it
    assert split_reasoning("Paris.", opened=False) == (None, "Paris.")
    assert split_reasoning("<think>\n\n</think>\n\nParis.") == (None, "Paris.")  # thinking off
    assert split_reasoning("still thinking", opened=True) == ("still thinking", "")
    stream = ReasoningStream()
    out = [stream.feed(c) for c in "<think>a<b</think>\nParis"]
    rest = stream.flush()
    assert "".join(r for r, _ in out) + rest[0] == "a<b" and "".join(c for _, c in out) + rest[1] == "Paris"


def test_answer_stream_sends_reasoning_then_calls():
    shape = AnswerShape(family="hermes", tools=read_tools([_tool("get_weather")]), reasoning=True)
    text = f"<think>The user wants weather.</think>\n<tool_call>\n{{\"name\": \"get_weather\", \"arguments\": {PARIS}}}\n</tool_call>"
    answer = shape.stream()
    deltas = [answer.feed(c) for c in text]
    last, shaped = answer.close()
    deltas.append(last)
    assert "".join(d.reasoning for d in deltas) == "The user wants weather."
    assert "".join(d.content for d in deltas).strip() == ""
    assert "".join(t.arguments for d in deltas for t in d.tool_calls) == PARIS
    whole = shape.finish(text)
    assert shaped.finish_reason == "tool_calls" and (shaped.content, shaped.reasoning) == (whole.content, whole.reasoning)
    assert [(c.name, c.arguments) for c in shaped.tool_calls] == [(c.name, c.arguments) for c in whole.tool_calls]


def _tool(name, parameters=None):
    return {"type": "function", "function": {"name": name, "parameters": parameters or {"type": "object"}}}


def test_tool_requests_are_checked():
    request = read_tools([_tool("a"), _tool("b")], {"type": "function", "function": {"name": "b"}}, False)
    assert (request.choice, request.name, request.parallel, request.forced) == ("named", "b", False, True)
    assert [t["function"]["name"] for t in request.template_tools()] == ["b"]
    assert read_tools(None) is None
    for bad, match in [
        (([_tool("a"), _tool("a")],), "two tools"),
        (([{"type": "code_interpreter"}],), "only 'function'"),
        (([_tool("a")], "always"), "tool_choice"),
        (([_tool("a")], {"type": "function", "function": {"name": "zzz"}}), "not among"),
        ((None, "required"), "needs tools"),
        (([{"type": "function", "function": {"name": "a", "retries": 3}}],), "retries"),
    ]:
        with pytest.raises(InvalidRequest, match=match):
            read_tools(*bad)


def test_forced_call_schema_follows_the_function():
    params = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    named = call_schema(read_tools([_tool("w", params)], {"type": "function", "function": {"name": "w"}}))
    assert named["properties"]["name"] == {"const": "w"} and named["properties"]["arguments"] == params
    several = call_schema(read_tools([_tool("w", params), _tool("t")], "required"))
    assert several["type"] == "array" and len(several["items"]["anyOf"]) == 2 and several["maxItems"] == 2


def test_schema_check_names_the_unsupported_keyword():
    schema = {"type": "object", "properties": {"age": {"type": "integer", "minimum": 0}}}
    with pytest.raises(InvalidRequest, match=r"schema\.properties\.age\.minimum.*'minimum'.*engine X"):
        check_schema(schema, {"type", "properties"}, engine="engine X")
    with pytest.raises(InvalidRequest, match="format 'email'"):
        check_schema({"type": "string", "format": "email"}, {"type", "format"}, engine="X", formats={"date"})
    check_schema({"title": "T", "type": "object", "$defs": {"a": {"type": "string"}}}, {"type", "$defs"}, engine="X")


def test_response_format_is_read():
    fmt = read_response_format({"type": "json_schema", "json_schema": {"name": "n", "schema": {"type": "object"},
                                                                      "strict": True}})
    assert (fmt.type, fmt.strict, fmt.constrained) == ("json_schema", True, True)
    assert read_response_format({"type": "json_object"}).json_schema() == {"type": "object"}
    with pytest.raises(InvalidRequest, match="yaml"):
        read_response_format({"type": "yaml"})


def test_tool_messages_go_back_to_templates_in_their_shapes():
    history = [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": PARIS}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18 C"},
    ]
    shaped = template_messages(history)
    arguments = shaped[1]["tool_calls"][0]["function"]["arguments"]
    assert arguments == json.loads(PARIS) and "x" + arguments == "x" + json.dumps(json.loads(PARIS))
    assert shaped[1]["content"] is None and shaped[2]["name"] == "get_weather"
    plain = plain_tool_messages(shaped)
    assert [m["role"] for m in plain] == ["user", "assistant", "user"]
    assert "18 C" in plain[2]["content"] and "get_weather" in plain[1]["content"]
