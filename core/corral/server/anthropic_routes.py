"""Anthropic's Messages API: ``POST /v1/messages`` (streamed with Anthropic's events) and
``POST /v1/messages/count_tokens``, for Claude-style clients and agents.

A request is read into the OpenAI-shaped messages and parameters drivers take (system, text, image,
tool_use and tool_result blocks; tools and tool_choice; thinking), runs through the same runtime as every
other surface, and its answer is written back as content blocks: ``thinking``, ``text``, ``tool_use``.
Errors have Anthropic's shape: ``{"type": "error", "error": {"type", "message"}}``.
"""

from __future__ import annotations

import functools
import json
import logging
import uuid
from typing import Any

from corral.errors import CorralError, InvalidRequest
from corral.records import ChatResult
from corral.server.bodies import MAX_STOPS, check_fields, field, read_json
from corral.server.generation import (
    Blocks,
    check_supported,
    collect,
    drain,
    event_stream,
    finish_reason,
    json_response,
    named_sse,
    open_stream,
    service,
    tool_params,
)
from corral.server.responses import endpoint

log = logging.getLogger("corral.server")

MESSAGE_FIELDS = frozenset({"model", "messages", "system", "max_tokens", "stop_sequences", "stream", "temperature",
                            "top_p", "top_k", "tools", "tool_choice", "thinking", "output_config", "metadata"})
COUNT_FIELDS = frozenset({"model", "messages", "system", "tools", "tool_choice", "thinking"})
#: Why an answer ended, OpenAI's words to Anthropic's.
STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "stop_sequence": "stop_sequence"}
IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")


def error_type(status: int) -> str:
    """Anthropic's error ``type`` for an HTTP status."""
    return {401: "authentication_error", 403: "permission_error", 404: "not_found_error",
            413: "request_too_large", 429: "rate_limit_error", 503: "overloaded_error"}.get(
        status, "api_error" if status >= 500 else "invalid_request_error")


def error_body(message: str, status: int) -> dict:
    return {"type": "error", "error": {"type": error_type(status), "message": message}}


def anthropic_endpoint(handler: Any) -> Any:
    """:func:`corral.server.responses.endpoint`, its errors in Anthropic's shape (Retry-After kept)."""
    inner = endpoint(handler)

    @functools.wraps(handler)
    async def wrapped(request: Any) -> Any:
        response = await inner(request)
        if response.status_code < 400 or response.media_type != "application/json":
            return response
        message = json.loads(response.body)["error"]["message"]
        headers = {"Retry-After": response.headers["retry-after"]} if "retry-after" in response.headers else None
        return json_response(error_body(message, response.status_code), response.status_code, headers)

    return wrapped


# --- reading a request -------------------------------------------------------------------------------


def _blocks(content: Any, where: str) -> list[dict]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list) or not all(isinstance(b, dict) for b in content):
        raise InvalidRequest(f"{where} must be a string or a list of content blocks")
    return content


def _text(content: Any, where: str) -> str:
    """The text of a string or of a list of text blocks (system prompts, tool results)."""
    parts = []
    for i, block in enumerate(_blocks(content, where)):
        if block.get("type") != "text" or not isinstance(block.get("text"), str):
            raise InvalidRequest(f"{where}[{i}]: only text blocks are supported here, got {block.get('type')!r}")
        parts.append(block["text"])
    return "\n".join(parts)


def _image(block: dict, where: str) -> dict:
    source = block.get("source")
    if not isinstance(source, dict):
        raise InvalidRequest(f"{where}.source must be an object")
    if source.get("type") == "base64":
        media = source.get("media_type")
        if media not in IMAGE_TYPES or not isinstance(source.get("data"), str):
            raise InvalidRequest(f"{where}.source needs a media_type ({', '.join(IMAGE_TYPES)}) and base64 data")
        url = f"data:{media};base64,{source['data']}"
    elif source.get("type") == "url" and isinstance(source.get("url"), str):
        url = source["url"]
    else:
        raise InvalidRequest(f"{where}.source.type {source.get('type')!r} is not supported; use base64 or url")
    return {"type": "image_url", "image_url": {"url": url}}


def _user(content: Any, where: str) -> list[dict]:
    """A user turn: its tool results as ``tool`` messages, then its text and images."""
    out: list[dict] = []
    parts: list[dict] = []
    for i, block in enumerate(_blocks(content, f"{where}.content")):
        here, kind = f"{where}.content[{i}]", block.get("type")
        if kind == "text":
            parts.append({"type": "text", "text": field(block, "text", str)})
        elif kind == "image":
            parts.append(_image(block, here))
        elif kind == "tool_result":
            ident = block.get("tool_use_id")
            if not isinstance(ident, str):
                raise InvalidRequest(f"{here} needs the 'tool_use_id' it answers")
            text = _text(block.get("content") or "", f"{here}.content")
            out.append({"role": "tool", "tool_call_id": ident,
                        "content": ("Error: " + text) if block.get("is_error") else text})
        else:
            raise InvalidRequest(f"{here}.type {kind!r} is not supported in a user turn "
                                 "(text, image and tool_result are)")
    if parts:
        images = any(p["type"] == "image_url" for p in parts)
        out.append({"role": "user", "content": parts if images else "\n".join(p["text"] for p in parts)})
    return out


def _assistant(content: Any, where: str) -> dict:
    """An assistant turn: its text and its tool calls (earlier thoughts are not shown to the model)."""
    texts, calls = [], []
    for i, block in enumerate(_blocks(content, f"{where}.content")):
        here, kind = f"{where}.content[{i}]", block.get("type")
        if kind == "text":
            texts.append(field(block, "text", str))
        elif kind == "tool_use":
            ident, name = block.get("id"), block.get("name")
            if not isinstance(ident, str) or not isinstance(name, str):
                raise InvalidRequest(f"{here} needs an 'id' and a 'name'")
            arguments = block.get("input") if block.get("input") is not None else {}
            calls.append({"id": ident, "type": "function",
                          "function": {"name": name, "arguments": json.dumps(arguments, ensure_ascii=False)}})
        elif kind not in ("thinking", "redacted_thinking"):
            raise InvalidRequest(f"{here}.type {kind!r} is not supported in an assistant turn "
                                 "(text, tool_use and thinking are)")
    message: dict[str, Any] = {"role": "assistant", "content": "\n".join(texts) if texts else None}
    if calls:
        message["tool_calls"] = calls
    elif message["content"] is None:
        message["content"] = ""
    return message


def read_messages(body: dict) -> list[dict]:
    """Anthropic's ``system`` and ``messages`` as OpenAI-shaped messages."""
    out: list[dict] = []
    system = body.get("system")
    if system is not None:
        text = _text(system, "system")
        if text:
            out.append({"role": "system", "content": text})
    messages = field(body, "messages", list)
    if not messages:
        raise InvalidRequest("field 'messages' must hold at least one message")
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        role = message.get("role") if isinstance(message, dict) else None
        if role == "user":
            out.extend(_user(message.get("content"), where))
        elif role == "assistant":
            out.append(_assistant(message.get("content"), where))
        else:
            raise InvalidRequest(f"{where}.role must be 'user' or 'assistant', got {role!r}")
    return out


def read_tool_fields(body: dict) -> dict[str, Any]:
    """``tools``, ``tool_choice`` and ``thinking`` in the drivers' (OpenAI's) shapes, checked."""
    out: dict[str, Any] = {}
    tools = field(body, "tools", list, None)
    choice = field(body, "tool_choice", dict, None)
    converted = None
    if tools:
        converted = []
        for i, tool in enumerate(tools):
            if not isinstance(tool, dict):
                raise InvalidRequest(f"tools[{i}] must be an object with a 'name' and an 'input_schema'")
            if tool.get("type", "custom") != "custom":
                raise InvalidRequest(f"tools[{i}].type {tool['type']!r} is not supported; "
                                     "only client tools with an input_schema are")
            unknown = sorted(set(tool) - {"type", "name", "description", "input_schema", "cache_control"})
            if unknown:
                raise InvalidRequest(f"tools[{i}].{unknown[0]} is not a supported field")
            converted.append({"type": "function", "function": {
                "name": tool.get("name"), "description": tool.get("description") or "",
                "parameters": tool.get("input_schema") or {"type": "object"}}})
    openai_choice: Any = None
    parallel = None
    if choice is not None:
        kind = choice.get("type")
        if kind not in ("auto", "any", "tool", "none"):
            raise InvalidRequest(f"tool_choice.type {kind!r} is not one of auto, any, tool, none")
        if kind == "tool" and not isinstance(choice.get("name"), str):
            raise InvalidRequest("tool_choice of type 'tool' needs the tool's 'name'")
        openai_choice = {"auto": "auto", "any": "required", "none": "none"}.get(kind) or \
            {"type": "function", "function": {"name": choice["name"]}}
        if choice.get("disable_parallel_tool_use") is not None:
            parallel = not field(choice, "disable_parallel_tool_use", bool)
    out.update(tool_params(converted, openai_choice, parallel))
    thinking = field(body, "thinking", dict, None)
    if thinking is not None:
        kind = thinking.get("type")
        if kind not in ("enabled", "disabled", "adaptive"):
            raise InvalidRequest(f"thinking.type {kind!r} is not one of enabled, disabled, adaptive")
        if kind == "disabled":
            out["reasoning_effort"] = "none"
    return out


def read_output_config(body: dict) -> dict[str, Any]:
    """``output_config``: ``format`` (a JSON schema the answer follows) becomes ``response_format``;
    ``effort`` is accepted (a local model thinks as its template lets it, see ``thinking``)."""
    config = field(body, "output_config", dict, None)
    if config is None:
        return {}
    unknown = sorted(set(config) - {"format", "effort"})
    if unknown:
        raise InvalidRequest(f"output_config.{unknown[0]} is not a supported field")
    effort = config.get("effort")
    if effort is not None and effort not in ("low", "medium", "high", "xhigh", "max"):
        raise InvalidRequest(f"output_config.effort {effort!r} is not one of low, medium, high, xhigh, max")
    fmt = config.get("format")
    if fmt is None:
        return {}
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema" or not isinstance(fmt.get("schema"), dict):
        raise InvalidRequest("output_config.format must be {'type': 'json_schema', 'schema': {...}}")
    from corral.tools import read_response_format

    value = {"type": "json_schema", "json_schema": {"name": "output", "schema": fmt["schema"]}}
    read_response_format(value)
    return {"response_format": value}


def read_request(body: dict) -> tuple[list[dict], dict[str, Any], list[str]]:
    """Messages, driver parameters and stop sequences of a ``/v1/messages`` body."""
    messages = read_messages(body)
    params: dict[str, Any] = {"max_tokens": field(body, "max_tokens", int)}
    if params["max_tokens"] < 1:
        raise InvalidRequest("max_tokens must be at least 1")
    for name, kind in (("temperature", float), ("top_p", float), ("top_k", int)):
        value = field(body, name, kind, None)
        if value is not None:
            params[name] = value
    params.update(read_tool_fields(body))
    params.update(read_output_config(body))
    stops = field(body, "stop_sequences", list, [])
    if len(stops) > MAX_STOPS or not all(isinstance(s, str) and s for s in stops):
        raise InvalidRequest(f"field 'stop_sequences' must be a list of at most {MAX_STOPS} non-empty strings")
    field(body, "metadata", dict, None)  # user_id only: nothing to do with it
    return messages, params, stops


# --- writing the answer --------------------------------------------------------------------------------


def _block(block: Any) -> dict:
    if block.kind == "reasoning":
        return {"type": "thinking", "thinking": block.text, "signature": ""}
    if block.kind == "call":
        return {"type": "tool_use", "id": block.id, "name": block.name, "input": block.arguments()}
    return {"type": "text", "text": block.text}


def _start_block(block: Any) -> dict:
    if block.kind == "call":
        return {"type": "tool_use", "id": block.id, "name": block.name, "input": {}}
    return _block(block) | ({"thinking": ""} if block.kind == "reasoning" else {"text": ""})


def _delta(block: Any, text: str) -> dict:
    if block.kind == "reasoning":
        return {"type": "thinking_delta", "thinking": text}
    if block.kind == "call":
        return {"type": "input_json_delta", "partial_json": text}
    return {"type": "text_delta", "text": text}


def _usage(result: ChatResult | None, blocks: Blocks) -> dict:
    # Without the driver's counts (an answer cut at a stop sequence), streamed pieces stand for tokens.
    prompt = result.prompt_tokens if result is not None else None
    completion = result.completion_tokens if result is not None else None
    return {"input_tokens": prompt or 0, "output_tokens": completion if completion is not None else blocks.pieces}


def _message(ident: str, model: str, content: list, reason: str | None, stop: str | None, usage: dict) -> dict:
    return {"id": ident, "type": "message", "role": "assistant", "model": model, "content": content,
            "stop_reason": reason, "stop_sequence": stop, "usage": usage}


@anthropic_endpoint
async def messages(request: Any) -> Any:
    body = await read_json(request)
    check_fields(body, MESSAGE_FIELDS, "/v1/messages")
    ref = field(body, "model", str)
    messages_, params, stops = read_request(body)
    ident = "msg_" + uuid.uuid4().hex[:24]
    blocks = Blocks(stops=stops)
    if field(body, "stream", bool, False):
        return await _stream(request, ref, messages_, params, blocks, ident)

    def work(entry: Any) -> ChatResult | None:
        check_supported(entry, params)
        return collect(entry.handle, messages_, params, blocks)

    entry, result = await service(request).run(ref, "chat", work)
    blocks.close()
    reason = STOP_REASONS.get(finish_reason(result, blocks, params["max_tokens"]), "end_turn")
    return json_response(_message(ident, entry.model.name, [_block(b) for b in blocks.blocks], reason,
                                  blocks.stopped, _usage(result, blocks)))


async def _stream(request: Any, ref: str, messages_: list, params: dict, blocks: Blocks, ident: str) -> Any:
    from corral.server.client import error_code

    generation = await open_stream(request, ref, "chat", messages_, params)
    start = _message(ident, generation.entry.model.name, [], None, None, {"input_tokens": 0, "output_tokens": 0})

    async def events():
        try:
            yield named_sse("message_start", {"type": "message_start", "message": start})
            pinged = False
            async for step in drain(generation, blocks):
                if step.what == "start":
                    yield named_sse("content_block_start", {"type": "content_block_start", "index": step.index,
                                                            "content_block": _start_block(step.block)})
                    if not pinged:
                        pinged = True
                        yield named_sse("ping", {"type": "ping"})
                elif step.what == "delta":
                    yield named_sse("content_block_delta", {"type": "content_block_delta", "index": step.index,
                                                            "delta": _delta(step.block, step.text)})
                else:
                    yield named_sse("content_block_stop", {"type": "content_block_stop", "index": step.index})
            if not pinged:
                yield named_sse("ping", {"type": "ping"})
            result = generation.result
            reason = STOP_REASONS.get(finish_reason(result, blocks, params["max_tokens"]), "end_turn")
            yield named_sse("message_delta", {"type": "message_delta",
                                              "delta": {"stop_reason": reason, "stop_sequence": blocks.stopped},
                                              "usage": _usage(result, blocks)})
            yield named_sse("message_stop", {"type": "message_stop"})
        except CorralError as exc:
            log.info("stream ended by %s: %s", error_code(type(exc)), exc)
            yield named_sse("error", error_body(str(exc), exc.http_status))
        except Exception as exc:
            log.exception("stream failed")
            yield named_sse("error", error_body(f"internal error: {type(exc).__name__}: {exc}", 500))
        finally:
            generation.pieces.stop()

    return event_stream(events())


@anthropic_endpoint
async def count_tokens(request: Any) -> Any:
    """The prompt's tokens as the model reads them: the messages rendered through its template and
    tokenized by one generation of a single token (drivers report what the prompt took)."""
    body = await read_json(request)
    check_fields(body, COUNT_FIELDS, "/v1/messages/count_tokens")
    ref = field(body, "model", str)
    messages_ = read_messages(body)
    params = {"max_tokens": 1, "temperature": 0.0, **read_tool_fields(body)}

    def work(entry: Any) -> Any:
        check_supported(entry, params)
        return entry.handle.chat(messages_, **params)

    entry, result = await service(request).run(ref, "chat", work)
    tokens = getattr(result, "prompt_tokens", None)
    if tokens is None:
        raise InvalidRequest(f"{entry.model.name}: its driver does not report prompt tokens, so they cannot be counted")
    return json_response({"input_tokens": int(tokens)})


def routes() -> list:
    from starlette.routing import Route

    return [
        Route("/v1/messages", messages, methods=["POST"]),
        Route("/v1/messages/count_tokens", count_tokens, methods=["POST"]),
    ]
