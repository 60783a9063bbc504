"""The chat playground's structured output with a tiny GGUF chat model (llama.cpp, random weights): a
forced tool call and a JSON schema hold its answer to valid JSON through llama.cpp's grammar; the page
sends the schema as response_format and the tools with tool_choice, and shows what the API returned,
streamed and whole."""

from __future__ import annotations

import json

import pytest

from corral.testing import write_tiny_gguf
from ui_helpers import build_library, open_ui, served

UNIT_TOOL = [{"type": "function", "function": {
    "name": "set_unit", "description": "Choose the temperature unit",
    "parameters": {"type": "object", "properties": {"unit": {"enum": ["c", "f"]}}, "required": ["unit"],
                   "additionalProperties": False}}}]
UNIT_SCHEMA = {"type": "object", "properties": {"unit": {"enum": ["c", "f"]}}, "required": ["unit"],
               "additionalProperties": False}


@pytest.fixture
def tiny_chat(ui_home):
    corral_llamacpp = pytest.importorskip("corral_llamacpp")
    library = build_library(ui_home, corral_llamacpp)
    library.import_path(write_tiny_gguf(ui_home / "tiny.gguf"), name="tiny")
    library.update_settings("tiny", {"n_ctx": 1024, "threads": 1})  # the tools' prompt is about 500 tokens
    try:
        with served(library) as server:
            yield server
    finally:
        library.store.close()


def stream_answer(sse: str) -> tuple[str, list[dict], str | None]:
    """(content, tool calls, finish reason) gathered from a streamed answer's events."""
    content, calls, finish = "", {}, None
    for line in sse.splitlines():
        if not line.startswith("data:") or line.strip() == "data: [DONE]":
            continue
        choice = json.loads(line[5:])["choices"][0]
        finish = choice.get("finish_reason") or finish
        delta = choice.get("delta") or {}
        content += delta.get("content") or ""
        for part in delta.get("tool_calls") or ():
            call = calls.setdefault(part["index"], {"id": None, "name": "", "arguments": ""})
            call["id"] = part.get("id") or call["id"]
            call["name"] += (part.get("function") or {}).get("name") or ""
            call["arguments"] += (part.get("function") or {}).get("arguments") or ""
    return content, [calls[i] for i in sorted(calls)], finish


def shown_calls(page) -> list[dict]:
    items = page.locator(".turn-assistant[data-done=true] .tool-calls li")
    return [{"id": items.nth(i).get_attribute("data-id"), "name": items.nth(i).get_attribute("data-name"),
             "arguments": items.nth(i).get_attribute("data-arguments")} for i in range(items.count())]


def ask(page, text: str, *, stream: bool) -> object:
    """Send ``text`` and return the API's response to the page's request."""
    page.fill("#chat-temperature", "0")
    page.fill("#chat-max-tokens", "60")
    page.set_checked("#chat-stream", stream)
    page.fill("#chat-input", text)
    with page.expect_response("**/v1/chat/completions", timeout=120_000) as answer:
        page.click("#chat-send")
    page.locator(".turn-assistant[data-done=true]").wait_for(timeout=120_000)
    assert not page.locator(".turn-error").count(), page.inner_text("#chat-log")
    return answer.value


def test_forced_tool_call_streamed_and_whole(page, tiny_chat):
    open_ui(page, tiny_chat, "#playground")
    page.select_option("#chat-model", "tiny")
    assert page.is_hidden("#chat-tools")
    page.check("#chat-tools-on")
    page.fill("#chat-tools", json.dumps(UNIT_TOOL))
    page.select_option("#chat-tool-choice", "required")

    response = ask(page, "Which unit?", stream=True)
    sent = response.request.post_data_json
    assert sent["tools"] == UNIT_TOOL and sent["tool_choice"] == "required" and sent["stream"] is True
    content, calls, finish = stream_answer(response.text())
    assert finish == "tool_calls" and [c["name"] for c in calls] == ["set_unit"]
    assert json.loads(calls[0]["arguments"])["unit"] in ("c", "f")  # the grammar held it to the schema
    assert shown_calls(page) == calls
    turn = page.locator(".turn-assistant[data-done=true]")
    assert turn.get_attribute("data-finish") == "tool_calls" and int(turn.get_attribute("data-chunks")) > 2
    assert "set_unit(" in turn.inner_text()

    page.click("#chat-clear")
    response = ask(page, "Which unit?", stream=False)
    assert response.request.post_data_json["stream"] is False
    message = response.json()["choices"][0]["message"]
    assert shown_calls(page) == [{"id": c["id"], "name": c["function"]["name"], "arguments": c["function"]["arguments"]}
                                 for c in message["tool_calls"]]
    assert page.get_attribute(".turn-assistant[data-done=true]", "data-finish") == "tool_calls"


def test_json_schema_answer_and_a_schema_that_is_not_json(page, tiny_chat, traffic):
    open_ui(page, tiny_chat, "#playground")
    page.select_option("#chat-model", "tiny")
    page.check("#chat-schema-on")
    page.fill("#chat-schema", "{not json")
    page.fill("#chat-input", "Which unit?")
    page.click("#chat-send")
    page.wait_for_selector(".turn-error")
    assert page.inner_text(".turn-error").startswith("error: The JSON schema is not JSON")
    assert not [u for u in traffic.urls if u.endswith("/v1/chat/completions")]
    page.click("#chat-clear")

    page.fill("#chat-schema", json.dumps(UNIT_SCHEMA))
    response = ask(page, "Which unit?", stream=True)
    sent = response.request.post_data_json
    assert sent["response_format"] == {"type": "json_schema", "json_schema": {"name": "answer", "schema": UNIT_SCHEMA}}
    assert "tools" not in sent
    content, calls, finish = stream_answer(response.text())
    assert json.loads(content)["unit"] in ("c", "f") and not calls
    shown = page.locator(".turn-assistant[data-done=true] > span").inner_text()
    assert shown == content

