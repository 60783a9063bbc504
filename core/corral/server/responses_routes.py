"""OpenAI's Responses API: ``POST /v1/responses`` (streamed with the Responses events), ``GET`` and
``DELETE /v1/responses/{id}``, for Codex-style clients.

A request's ``instructions`` and ``input`` (text, or items: messages, ``function_call`` and
``function_call_output``) become the OpenAI-shaped messages drivers take; the answer's blocks become
output items: ``reasoning``, ``message`` and ``function_call``. Requests are stateless unless they name a
``previous_response_id``: answers are kept in the library database (unless ``store`` is false) for
:data:`KEEP_SECONDS` and at most :data:`KEEP_COUNT` of them, so a later request can continue one.
(Not :mod:`corral.server.responses`, which shapes every route's errors.)
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from corral.errors import CorralError, InvalidRequest, NotFound
from corral.records import ChatResult
from corral.server.bodies import check_fields, field, read_json
from corral.server.client import error_code
from corral.server import generation
from corral.server.generation import Blocks, named_sse, service
from corral.server.responses import endpoint

log = logging.getLogger("corral.server")

#: How long a kept answer can be continued, and how many are kept at most (the oldest go first).
KEEP_SECONDS = 24 * 3600
KEEP_COUNT = 1000

RESPONSE_FIELDS = frozenset({
    "model", "input", "instructions", "max_output_tokens", "temperature", "top_p", "tools", "tool_choice",
    "parallel_tool_calls", "text", "stream", "store", "previous_response_id", "metadata", "user", "reasoning",
    "include", "prompt_cache_key", "truncation",
})  # fmt: skip


# --- reading a request -------------------------------------------------------------------------------


def _parts(content: Any, where: str) -> Any:
    """A message's content: a string, or parts (``input_text`` / ``output_text``, ``input_image``)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise InvalidRequest(f"{where} must be a string or a list of content parts")
    parts: list[dict] = []
    for i, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text") and isinstance(part.get("text"), str):
            parts.append({"type": "text", "text": part["text"]})
        elif kind == "input_image" and isinstance(part.get("image_url"), str):
            parts.append({"type": "image_url", "image_url": {"url": part["image_url"]}})
        else:
            raise InvalidRequest(f"{where}[{i}].type {kind!r} is not supported (input_text, output_text and "
                                 "input_image with an image_url are)")
    if any(p["type"] == "image_url" for p in parts):
        return parts
    return "".join(p["text"] for p in parts)


def read_input(value: Any) -> list[dict]:
    """``input`` (a string or a list of items) as OpenAI chat messages."""
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if not isinstance(value, list) or not value:
        raise InvalidRequest("field 'input' must be a string or a non-empty list of items")
    out: list[dict] = []
    for i, item in enumerate(value):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise InvalidRequest(f"{where} must be an object")
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            if role not in ("user", "assistant", "system", "developer"):
                raise InvalidRequest(f"{where}.role {role!r} is not one of user, assistant, system, developer")
            content = _parts(item.get("content"), f"{where}.content")
            out.append({"role": "system" if role == "developer" else role, "content": content})
        elif kind == "function_call":
            call_id, name = item.get("call_id"), item.get("name")
            if not isinstance(call_id, str) or not isinstance(name, str):
                raise InvalidRequest(f"{where} needs a 'call_id' and a 'name'")
            call = {"id": call_id, "type": "function",
                    "function": {"name": name, "arguments": field(item, "arguments", str, "{}")}}
            if out and out[-1]["role"] == "assistant" and not isinstance(out[-1].get("content"), list):
                out[-1].setdefault("tool_calls", []).append(call)
            else:
                out.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            call_id = item.get("call_id")
            if not isinstance(call_id, str):
                raise InvalidRequest(f"{where} needs the 'call_id' it answers")
            output = item.get("output")
            text = output if isinstance(output, str) else _parts(output, f"{where}.output")
            if not isinstance(text, str):
                raise InvalidRequest(f"{where}.output must be text")
            out.append({"role": "tool", "tool_call_id": call_id, "content": text})
        elif kind != "reasoning":  # earlier thoughts are not shown to the model again
            raise InvalidRequest(f"{where}.type {kind!r} is not supported (message, function_call, "
                                 "function_call_output and reasoning are)")
    return out


def _tools(body: dict) -> dict[str, Any]:
    tools = field(body, "tools", list, None)
    converted = None
    if tools:
        converted = []
        for i, tool in enumerate(tools):
            if not isinstance(tool, dict) or tool.get("type") != "function":
                kind = tool.get("type") if isinstance(tool, dict) else None
                raise InvalidRequest(f"tools[{i}].type {kind!r} is not supported; only function tools are")
            unknown = sorted(set(tool) - {"type", "name", "description", "parameters", "strict"})
            if unknown:
                raise InvalidRequest(f"tools[{i}].{unknown[0]} is not a supported field")
            converted.append({"type": "function", "function": {k: v for k, v in tool.items() if k != "type"}})
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        if choice.get("type") != "function" or not isinstance(choice.get("name"), str):
            raise InvalidRequest(f"tool_choice {choice!r} is not supported; use none, auto, required or "
                                 "{'type': 'function', 'name': NAME}")
        choice = {"type": "function", "function": {"name": choice["name"]}}
    return generation.tool_params(converted, choice, field(body, "parallel_tool_calls", bool, None))


def _text_format(body: dict) -> dict[str, Any]:
    """``text.format`` as the drivers' ``response_format``."""
    from corral.tools import read_response_format

    text = field(body, "text", dict, {})
    unknown = sorted(set(text) - {"format", "verbosity"})
    if unknown:
        raise InvalidRequest(f"text.{unknown[0]} is not a supported field")
    fmt = text.get("format")
    if fmt is None:
        return {}
    if not isinstance(fmt, dict):
        raise InvalidRequest("text.format must be an object such as {'type': 'json_schema', ...}")
    if fmt.get("type") == "json_schema":
        spec = {k: v for k, v in fmt.items() if k != "type"}
        value: dict[str, Any] = {"type": "json_schema", "json_schema": spec}
    else:
        value = dict(fmt)
    try:
        constrained = read_response_format(value).constrained
    except InvalidRequest as exc:
        raise InvalidRequest(str(exc).replace("response_format.json_schema", "text.format")
                             .replace("response_format", "text.format")) from None
    return {"response_format": value} if constrained else {}


def read_request(body: dict) -> dict[str, Any]:
    """The driver parameters of a ``/v1/responses`` body."""
    from corral.tools import read_effort

    params: dict[str, Any] = {}
    limit = field(body, "max_output_tokens", int, None)
    if limit is not None:
        if limit < 1:
            raise InvalidRequest("max_output_tokens must be at least 1")
        params["max_tokens"] = limit
    for name in ("temperature", "top_p"):
        value = field(body, name, float, None)
        if value is not None:
            params[name] = value
    params.update(_tools(body))
    params.update(_text_format(body))
    reasoning = field(body, "reasoning", dict, {})
    unknown = sorted(set(reasoning) - {"effort", "summary", "generate_summary"})
    if unknown:
        raise InvalidRequest(f"reasoning.{unknown[0]} is not a supported field")
    effort = read_effort(reasoning.get("effort"))
    if effort is not None:
        params["reasoning_effort"] = effort
    include = field(body, "include", list, [])
    odd = [v for v in include if v != "reasoning.encrypted_content"]
    if odd:
        raise InvalidRequest(f"include {odd[0]!r} is not supported")
    if field(body, "truncation", str, "disabled") != "disabled":
        raise InvalidRequest("truncation 'auto' is not supported: a prompt longer than the context is a 400")
    field(body, "metadata", dict, None)
    return params


# --- writing the answer --------------------------------------------------------------------------------


def _item(block: Any, ident: str, done: bool) -> dict:
    status = "completed" if done else "in_progress"
    if block.kind == "call":
        return {"id": ident, "type": "function_call", "call_id": block.id, "name": block.name,
                "arguments": block.text if done else "", "status": status}
    if block.kind == "reasoning":
        content = [{"type": "reasoning_text", "text": block.text}] if done else []
        return {"id": ident, "type": "reasoning", "summary": [], "content": content, "status": status}
    content = [_part(block.text)] if done else []
    return {"id": ident, "type": "message", "status": status, "role": "assistant", "content": content}


def _part(text: str, reasoning: bool = False) -> dict:
    if reasoning:
        return {"type": "reasoning_text", "text": text}
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _item_id(block: Any) -> str:
    prefix = {"call": "fc_", "reasoning": "rs_"}.get(block.kind, "msg_")
    return prefix + uuid.uuid4().hex[:24]


def _usage(result: ChatResult | None, blocks: Blocks) -> dict:
    prompt = (result.prompt_tokens if result is not None else None) or 0
    completion = result.completion_tokens if result is not None and result.completion_tokens is not None \
        else blocks.pieces
    return {"input_tokens": prompt, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": completion,
            "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": prompt + completion}


def _history_turn(blocks: Blocks) -> dict:
    """The answer as the assistant message a continuation shows the model."""
    text = "".join(b.text for b in blocks.blocks if b.kind == "text")
    calls = [{"id": b.id, "type": "function", "function": {"name": b.name, "arguments": b.text or "{}"}}
             for b in blocks.calls]
    if not calls:
        return {"role": "assistant", "content": text}
    return {"role": "assistant", "content": text or None, "tool_calls": calls}


class _Answer:
    """One response being made: its id, what the request asked, and its history for a continuation."""

    def __init__(self, body: dict, params: dict, history: list[dict]) -> None:
        self.id = "resp_" + uuid.uuid4().hex[:24]
        self.created = int(time.time())
        self.body = body
        self.params = params
        self.history = history
        self.store = field(body, "store", bool, True)
        self.blocks = Blocks()
        self.ids: list[str] = []

    def response(self, model: str, status: str, output: list, usage: dict | None) -> dict:
        body = self.body
        fmt = (body.get("text") or {}).get("format") or {"type": "text"}
        return {
            "id": self.id, "object": "response", "created_at": self.created, "status": status, "error": None,
            "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
            "instructions": body.get("instructions"), "max_output_tokens": body.get("max_output_tokens"),
            "model": model, "output": output, "parallel_tool_calls": body.get("parallel_tool_calls", True),
            "previous_response_id": body.get("previous_response_id"),
            "reasoning": {"effort": (body.get("reasoning") or {}).get("effort"), "summary": None},
            "store": self.store, "temperature": body.get("temperature"), "text": {"format": fmt},
            "tool_choice": body.get("tool_choice", "auto"), "tools": body.get("tools") or [],
            "top_p": body.get("top_p"), "truncation": "disabled", "usage": usage, "user": body.get("user"),
            "metadata": body.get("metadata") or {},
        }

    def finished(self, model: str, result: ChatResult | None) -> dict:
        while len(self.ids) < len(self.blocks.blocks):
            self.ids.append(_item_id(self.blocks.blocks[len(self.ids)]))
        output = [_item(b, i, True) for b, i in zip(self.blocks.blocks, self.ids)]
        reason = generation.finish_reason(result, self.blocks, self.params.get("max_tokens"))
        return self.response(model, "incomplete" if reason == "length" else "completed", output,
                             _usage(result, self.blocks))

    def kept(self, response: dict) -> dict:
        return {"response": response, "history": [*self.history, _history_turn(self.blocks)]}


async def _keep(request: Any, answer: _Answer, response: dict) -> None:
    if answer.store:
        runtime = service(request).runtime
        await service(request).in_thread(lambda: runtime.lib().store.save_response(
            answer.id, answer.kept(response), max_age=KEEP_SECONDS, keep=KEEP_COUNT))


async def _kept(request: Any, ident: str) -> dict:
    runtime = service(request).runtime
    kept = await service(request).in_thread(lambda: runtime.lib().store.get_response(ident, max_age=KEEP_SECONDS))
    if kept is None:
        raise NotFound(f"no response {ident!r} is kept (answers are kept {KEEP_SECONDS // 3600} h, the newest "
                       f"{KEEP_COUNT}, and not at all with store: false)")
    return kept


@endpoint
async def create_response(request: Any) -> Any:
    body = await read_json(request)
    check_fields(body, RESPONSE_FIELDS, "/v1/responses")
    ref = field(body, "model", str)
    params = read_request(body)
    history: list[dict] = []
    previous = field(body, "previous_response_id", str, None)
    if previous is not None:
        history = list((await _kept(request, previous))["history"])
    history += read_input(body.get("input"))
    instructions = field(body, "instructions", str, None)
    messages = ([{"role": "system", "content": instructions}] if instructions else []) + history
    answer = _Answer(body, params, history)
    if field(body, "stream", bool, False):
        return await _stream(request, ref, messages, answer)

    def work(entry: Any) -> ChatResult | None:
        generation.check_supported(entry, params)
        return generation.collect(entry.handle, messages, params, answer.blocks)

    entry, result = await service(request).run(ref, "chat", work)
    answer.blocks.close()
    response = answer.finished(entry.model.name, result)
    await _keep(request, answer, response)
    return generation.json_response(response)


async def _stream(request: Any, ref: str, messages: list, answer: _Answer) -> Any:
    running = await generation.open_stream(request, ref, "chat", messages, answer.params)
    model = running.entry.model.name
    number = iter(range(1 << 62))

    def event(kind: str, **data: Any) -> str:
        return named_sse(kind, {"type": kind, "sequence_number": next(number), **data})

    def step_events(step: Any) -> list[str]:
        block, index = step.block, step.index
        if step.what == "start":
            answer.ids.append(_item_id(block))
        ident = answer.ids[index]
        where = {"item_id": ident, "output_index": index}
        reasoning = block.kind == "reasoning"
        if step.what == "start":
            out = [event("response.output_item.added", output_index=index, item=_item(block, ident, False))]
            if block.kind != "call":
                out.append(event("response.content_part.added", **where, content_index=0, part=_part("", reasoning)))
            return out
        if step.what == "delta":
            if block.kind == "call":
                return [event("response.function_call_arguments.delta", **where, delta=step.text)]
            if reasoning:
                return [event("response.reasoning_text.delta", **where, content_index=0, delta=step.text)]
            return [event("response.output_text.delta", **where, content_index=0, delta=step.text, logprobs=[])]
        if block.kind == "call":
            out = [event("response.function_call_arguments.done", **where, name=block.name, arguments=block.text)]
        elif reasoning:
            out = [event("response.reasoning_text.done", **where, content_index=0, text=block.text)]
        else:
            out = [event("response.output_text.done", **where, content_index=0, text=block.text, logprobs=[])]
        if block.kind != "call":
            out.append(event("response.content_part.done", **where, content_index=0, part=_part(block.text, reasoning)))
        return out + [event("response.output_item.done", output_index=index, item=_item(block, ident, True))]

    async def events():
        try:
            started = answer.response(model, "in_progress", [], None)
            yield event("response.created", response=started)
            yield event("response.in_progress", response=started)
            async for step in generation.drain(running, answer.blocks):
                for line in step_events(step):
                    yield line
            response = answer.finished(model, running.result)
            await _keep(request, answer, response)
            yield event("response.completed" if response["status"] == "completed" else "response.incomplete",
                        response=response)
        except CorralError as exc:
            yield event("error", code=error_code(type(exc)), message=str(exc), param=None)
        except Exception as exc:
            log.exception("stream failed")
            yield event("error", code="internal_error", message=f"internal error: {type(exc).__name__}: {exc}",
                        param=None)
        finally:
            running.pieces.stop()

    return generation.event_stream(events())


@endpoint
async def get_response(request: Any) -> Any:
    return generation.json_response((await _kept(request, request.path_params["response_id"]))["response"])


@endpoint
async def delete_response(request: Any) -> Any:
    ident = request.path_params["response_id"]
    runtime = service(request).runtime
    if not await service(request).in_thread(lambda: runtime.lib().store.delete_response(ident)):
        raise NotFound(f"no response {ident!r} is kept")
    return generation.json_response({"id": ident, "object": "response.deleted", "deleted": True})


def routes() -> list:
    from starlette.routing import Route

    return [
        Route("/v1/responses", create_response, methods=["POST"]),
        Route("/v1/responses/{response_id}", get_response, methods=["GET"]),
        Route("/v1/responses/{response_id}", delete_response, methods=["DELETE"]),
    ]
