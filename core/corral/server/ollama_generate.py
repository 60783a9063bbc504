"""Ollama's ``/api/chat``, ``/api/generate``, ``/api/embed`` and ``/api/embeddings``.

Each request is read into what drivers take (OpenAI-shaped messages and parameters: the same as the
``/v1`` routes) and runs through :class:`corral.server.service.Service`: the same load rules, queue, 503,
watchdog and tool / schema / reasoning handling (:mod:`corral.tools`). ``options`` that are load
settings (``num_ctx``, ``num_gpu``, ``num_thread``) load the model with them, replacing a load with other
settings, as Ollama does; ``keep_alive`` sets how long the model stays loaded once idle (0 unloads it
after the request, a negative value keeps it until asked).
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from typing import Any

from corral.errors import InvalidRequest
from corral.records import ChatResult
from corral.server.bodies import MAX_STOPS, check_fields, field, read_json, text_list
from corral.server.generation import Blocks, as_result, check_supported, drain, finish_reason, json_response, open_stream, service
from corral.server.ollama_routes import (
    LOAD_OPTIONS,
    error_line,
    find_model,
    model_field,
    ndjson,
    now_iso,
    ollama_endpoint,
    ollama_name,
)

#: Ollama's sampling options Corral honours, with the driver parameter each becomes.
SAMPLING_OPTIONS: dict[str, tuple[str, type]] = {
    "temperature": ("temperature", float),
    "top_k": ("top_k", int),
    "top_p": ("top_p", float),
    "min_p": ("min_p", float),
    "typical_p": ("typical_p", float),
    "seed": ("seed", int),
    "repeat_penalty": ("repeat_penalty", float),
    "presence_penalty": ("presence_penalty", float),
    "frequency_penalty": ("frequency_penalty", float),
}
COMMON = {"model", "stream", "options", "keep_alive", "format", "think", "logprobs", "top_logprobs"}
CHAT_FIELDS = frozenset(COMMON | {"messages", "tools"})
GENERATE_FIELDS = frozenset(COMMON | {"prompt", "system", "images", "raw", "suffix", "template", "context"})
EMBED_FIELDS = frozenset({"model", "input", "truncate", "options", "keep_alive", "dimensions"})
EMBEDDINGS_FIELDS = frozenset({"model", "prompt", "options", "keep_alive"})
MESSAGE_FIELDS = frozenset({"role", "content", "images", "tool_calls", "tool_name", "thinking"})


# --- reading a request ----------------------------------------------------------------------------------


def read_options(body: dict, *, sampling: bool = True) -> tuple[dict[str, Any], dict[str, Any]]:
    """(load settings, driver parameters) from Ollama's ``options``; an option Corral does not honour is a
    400 naming it. ``sampling`` False (embeddings) takes load settings only."""
    options = field(body, "options", dict, {})
    settings: dict[str, Any] = {}
    params: dict[str, Any] = {}
    for name, value in options.items():
        if value is None:
            continue
        where = {name: value}
        if name in LOAD_OPTIONS:
            settings[LOAD_OPTIONS[name]] = field(where, name, int)
        elif sampling and name in SAMPLING_OPTIONS:
            key, kind = SAMPLING_OPTIONS[name]
            params[key] = field(where, name, kind)
        elif sampling and name == "num_predict":
            count = field(where, name, int)
            if count == 0 or count < -2:
                raise InvalidRequest("options.num_predict must be at least 1, or -1 (no limit) or -2 (fill the context)")
            if count > 0:
                params["max_tokens"] = count
        elif sampling and name == "stop":
            stops = [value] if isinstance(value, str) else value
            if not isinstance(stops, list) or len(stops) > MAX_STOPS or not all(isinstance(s, str) for s in stops):
                raise InvalidRequest(f"options.stop must be a string or a list of at most {MAX_STOPS} strings")
            if stops:
                params["stop"] = list(stops)
        else:
            raise InvalidRequest(f"options.{name} is not supported by Corral (see docs/http.md, Ollama API)")
    return settings, params


def read_keep_alive(body: dict) -> float | None:
    """Seconds from Ollama's ``keep_alive`` (a number of seconds or a duration such as ``"5m"``); 0 unloads
    after the request, a negative value keeps the model loaded until asked (-1). None: unchanged."""
    from corral.server.manage_routes import parse_keep_alive

    value = body.get("keep_alive")
    return None if value is None else parse_keep_alive(value)


def _image_part(text: Any, where: str) -> dict:
    """An OpenAI ``image_url`` part (a data URL) from one of Ollama's base64 images."""
    if not isinstance(text, str):
        raise InvalidRequest(f"{where} must be a base64-encoded image")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest(f"{where} is not valid base64") from None
    kinds = ((b"\x89PNG", "png"), (b"\xff\xd8", "jpeg"), (b"GIF8", "gif"), (b"RIFF", "webp"), (b"BM", "bmp"))
    mime = next((f"image/{kind}" for magic, kind in kinds if raw.startswith(magic)), "image/png")
    return {"type": "image_url", "image_url": {"url": f"data:{mime};base64,{text}"}}


def _with_images(content: str, images: Any, where: str) -> Any:
    if not images:
        return content
    if not isinstance(images, list):
        raise InvalidRequest(f"{where} must be a list of base64-encoded images")
    return [{"type": "text", "text": content}] + [_image_part(img, f"{where}[{j}]") for j, img in enumerate(images)]


def chat_messages(raw: list) -> list[dict]:
    """Ollama's messages as drivers take them (OpenAI's shape): images as data-URL parts, tool calls
    with JSON-text arguments and ids, each tool result tied to the call it answers (by ``tool_name``,
    else in order)."""
    from corral.tools import call_id

    out: list[dict] = []
    unanswered: list[tuple[str, str]] = []
    for i, message in enumerate(raw):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise InvalidRequest(f"messages[{i}] must be an object with a 'role' and a 'content'")
        unknown = sorted(set(message) - MESSAGE_FIELDS)
        if unknown:
            raise InvalidRequest(f"messages[{i}].{unknown[0]} is not supported")
        role = message["role"]
        content = field(message, "content", str, "")
        item: dict[str, Any] = {"role": role, "content": _with_images(content, message.get("images"),
                                                                      f"messages[{i}].images")}
        calls = field(message, "tool_calls", list, None)
        if calls:
            item["tool_calls"] = []
            for j, call in enumerate(calls):
                function = call.get("function") if isinstance(call, dict) else None
                if not isinstance(function, dict) or not isinstance(function.get("name"), str):
                    raise InvalidRequest(f"messages[{i}].tool_calls[{j}] needs a 'function' with a 'name'")
                arguments = function.get("arguments") or {}
                text = arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)
                ident = call.get("id") if isinstance(call.get("id"), str) else call_id()
                item["tool_calls"].append({"id": ident, "type": "function",
                                           "function": {"name": function["name"], "arguments": text}})
                unanswered.append((ident, function["name"]))
        if role == "tool":
            name = field(message, "tool_name", str, None)
            answered = next((c for c in unanswered if name is None or c[1] == name), None)
            if answered is not None:
                unanswered.remove(answered)
            item["tool_call_id"] = answered[0] if answered is not None else call_id()
            if name is not None:
                item["name"] = name
        out.append(item)
    return out


def features(body: dict, *, chat: bool) -> dict[str, Any]:
    """``tools``, ``format``, ``think`` and log-probabilities, read into their OpenAI names and checked
    there (:func:`corral.server.bodies.chat_features`), as the drivers take them."""
    from corral.server.bodies import chat_features

    asked: dict[str, Any] = {k: body[k] for k in ("logprobs", "top_logprobs") if body.get(k) is not None}
    if chat and body.get("tools"):
        asked["tools"] = body["tools"]
    fmt = body.get("format")
    if fmt == "json":
        asked["response_format"] = {"type": "json_object"}
    elif isinstance(fmt, dict):
        asked["response_format"] = {"type": "json_schema", "json_schema": {"name": "format", "schema": fmt}}
    elif fmt not in (None, ""):
        raise InvalidRequest("field 'format' must be \"json\" or a JSON schema object")
    think = body.get("think")
    if think is False:
        asked["reasoning_effort"] = "none"
    elif isinstance(think, str):
        asked["reasoning_effort"] = think
    elif think not in (None, True):
        raise InvalidRequest("field 'think' must be true, false, or one of low, medium, high")
    return chat_features(asked)


# --- running it -----------------------------------------------------------------------------------------


class Run:
    """One Ollama request on its way through the runtime: the model, its load settings and keep-alive, and
    the times Ollama's answers report (nanoseconds)."""

    def __init__(self, request: Any, name: str, settings: dict, keep_alive: float | None) -> None:
        self.request = request
        self.service = service(request)
        self.name = name
        self.settings = settings
        self.keep_alive = keep_alive
        self.started = time.monotonic()
        self.entered = self.started
        self.model: Any = None

    async def prepare(self) -> str:
        """Find the model and load it with the request's settings when it gives any; the ref to run."""
        svc = self.service
        self.model = await svc.in_thread(find_model, svc, self.name)
        if self.settings:
            await svc.in_thread(svc.runtime.load, self.model.id, settings=self.settings,
                                keep_alive=self.keep_alive, load=True)
        return self.model.id

    def begin(self, entry: Any) -> None:
        """The model's turn came (in any thread)."""
        self.entered = time.monotonic()
        if self.keep_alive is not None:
            entry.keep_alive = self.keep_alive

    async def end(self, entry: Any) -> None:
        """After the answer: keep_alive 0 unloads the model now if nothing else waits for it (else the
        watchdog does once it is idle)."""
        if self.keep_alive == 0:
            await self.service.in_thread(self.service.runtime.unload_if_idle, entry,
                                         f"{entry.model.name} was unloaded after its request (keep_alive 0)",
                                         load=True)

    def head(self) -> dict:
        return {"model": ollama_name(self.model.name), "created_at": now_iso()}

    def counts(self, result: ChatResult | None, pieces: int, reason: str) -> dict:
        ended = time.monotonic()
        ns = lambda seconds: int(seconds * 1e9)  # noqa: E731
        out: dict[str, Any] = {"done": True, "done_reason": "stop" if reason == "tool_calls" else reason,
                               "total_duration": ns(ended - self.started),
                               "load_duration": ns(self.entered - self.started)}
        prompt = result.prompt_tokens if result is not None else None
        completion = result.completion_tokens if result is not None else None
        if prompt is not None:
            out["prompt_eval_count"] = prompt
        out["eval_count"] = completion if completion is not None else pieces
        out["eval_duration"] = ns(ended - self.entered)
        return out

    async def load_only(self, kind: str) -> Any:
        """An empty request: load the model (Ollama's preload), or unload it with keep_alive 0."""
        svc = self.service
        reason = "load"
        if self.keep_alive == 0:
            if svc.runtime.find(self.model.id) is not None:
                await svc.in_thread(svc.runtime.unload, self.model.id, load=True)
            reason = "unload"
        else:
            entry, turn = await svc.enter(self.model.id, kind)
            turn.release()
            self.begin(entry)
        body = {**self.head(), "done": True, "done_reason": reason}
        body.update({"message": {"role": "assistant", "content": ""}} if kind == "chat" else {"response": ""})
        return json_response(body)


def _call(block_or_call: Any, index: int) -> dict:
    arguments = block_or_call.arguments
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except ValueError:
            arguments = {}
    elif callable(arguments):
        arguments = arguments()
    return {"id": block_or_call.id, "function": {"index": index, "name": block_or_call.name, "arguments": arguments}}


async def _answer(run: Run, kind: str, item: Any, params: dict, stream: bool, *, chat: bool) -> Any:
    """Run a chat (``kind`` ``chat``) or a completion (``complete``) and answer it in the shape of
    ``/api/chat`` (``chat``) or ``/api/generate``."""
    ref = await run.prepare()
    if not stream:
        def work(entry: Any) -> ChatResult:
            run.begin(entry)
            check_supported(entry, params)
            return as_result(getattr(entry.handle, kind)(item, **params))

        entry, result = await run.service.run(ref, kind, work)
        await run.end(entry)
        body = run.head()
        if chat:
            message: dict[str, Any] = {"role": "assistant", "content": result.text or ""}
            if result.reasoning:
                message["thinking"] = result.reasoning
            if result.tool_calls:
                message["tool_calls"] = [_call(c, i) for i, c in enumerate(result.tool_calls)]
            body["message"] = message
        else:
            body["response"] = result.text
            if result.reasoning:
                body["thinking"] = result.reasoning
        if result.logprobs is not None:
            body["logprobs"] = [{"token": t.token, "logprob": t.logprob,
                                 "top_logprobs": [{"token": o, "logprob": lp} for o, lp in t.top]}
                                for t in result.logprobs]
        body.update(run.counts(result, 0, result.finish_reason or "stop"))
        return json_response(body)

    if params.get("logprobs"):
        raise InvalidRequest("logprobs are answered with stream: false only")

    generation = await open_stream(run.request, ref, kind, item, params)
    run.begin(generation.entry)
    blocks = Blocks()

    def piece(text: str, key: str) -> dict:
        body = run.head()
        if chat:
            body["message"] = {"role": "assistant", "content": text if key == "content" else "",
                               **({"thinking": text} if key == "thinking" else {})}
        else:
            body["response"] = text if key == "content" else ""
            if key == "thinking":
                body["thinking"] = text
        body["done"] = False
        return body

    async def lines():
        calls = 0
        try:
            async for step in drain(generation, blocks):
                if step.what == "delta" and step.block.kind != "call":
                    yield piece(step.text, "content" if step.block.kind == "text" else "thinking")
                elif step.what == "stop" and step.block.kind == "call":
                    line = piece("", "content")
                    line["message"]["tool_calls"] = [_call(step.block, calls)]
                    calls += 1
                    yield line
            result = generation.result
            last = piece("", "content")
            last.update(run.counts(result, blocks.pieces, finish_reason(result, blocks, params.get("max_tokens"))))
            yield last
        except Exception as exc:
            yield error_line(exc)
        finally:
            generation.pieces.stop()
            await run.end(generation.entry)

    return ndjson(lines())


@ollama_endpoint
async def chat(request: Any) -> Any:
    body = await read_json(request)
    check_fields(body, CHAT_FIELDS, "/api/chat")
    settings, params = read_options(body)
    run = Run(request, model_field(body), settings, read_keep_alive(body))
    messages = chat_messages(field(body, "messages", list, []))
    params.update(features(body, chat=True))
    stream = field(body, "stream", bool, True)
    if not messages:
        await run.prepare()
        return await run.load_only("chat")
    return await _answer(run, "chat", messages, params, stream, chat=True)


@ollama_endpoint
async def generate(request: Any) -> Any:
    body = await read_json(request)
    check_fields(body, GENERATE_FIELDS, "/api/generate")
    for name in ("suffix", "template", "context"):
        if body.get(name):
            raise InvalidRequest(f"field {name!r} is not supported by /api/generate (Corral renders the "
                                 "model's own chat template; send the whole conversation to /api/chat)")
    settings, params = read_options(body)
    run = Run(request, model_field(body), settings, read_keep_alive(body))
    prompt = field(body, "prompt", str, "")
    system = field(body, "system", str, None)
    raw = field(body, "raw", bool, False)
    params.update(features(body, chat=False))
    stream = field(body, "stream", bool, True)
    if not prompt:
        await run.prepare()
        return await run.load_only("complete")
    if raw:  # the prompt as it is, no template: a plain completion
        if body.get("images") or system:
            raise InvalidRequest("raw prompts take no 'images' or 'system'; leave raw out to use the template")
        return await _answer(run, "complete", prompt, params, stream, chat=False)
    messages = ([{"role": "system", "content": system}] if system else []) + \
        [{"role": "user", "content": _with_images(prompt, body.get("images"), "images")}]
    return await _answer(run, "chat", messages, params, stream, chat=False)


async def _vectors(request: Any, body: dict, texts: list[str], extra: dict) -> tuple[Run, list, int | None]:
    settings, _ = read_options(body, sampling=False)
    run = Run(request, model_field(body), settings, read_keep_alive(body))
    ref = await run.prepare()

    def work(entry: Any) -> tuple[list, int | None]:
        run.begin(entry)
        vectors = entry.handle.embed(texts, **extra)
        counter = getattr(entry.handle, "count_tokens", None)
        return [[float(x) for x in v] for v in vectors], (int(sum(counter(texts))) if counter else None)

    entry, (vectors, tokens) = await run.service.run(ref, "embed", work)
    await run.end(entry)
    return run, vectors, tokens


@ollama_endpoint
async def embed(request: Any) -> Any:
    body = await read_json(request)
    check_fields(body, EMBED_FIELDS, "/api/embed")
    texts = text_list(body, "input")
    if field(body, "truncate", bool, True) is False:
        raise InvalidRequest("truncate: false is not supported (inputs longer than the model reads are cut)")
    dimensions = field(body, "dimensions", int, None)
    extra: dict[str, Any] = {"normalize": True}  # Ollama's /api/embed answers unit vectors
    if dimensions is not None:
        extra["dimensions"] = dimensions
    run, vectors, tokens = await _vectors(request, body, texts, extra)
    if dimensions is not None and vectors and len(vectors[0]) != dimensions:
        raise InvalidRequest(f"{run.model.name} makes {len(vectors[0])}-dimensional vectors, not {dimensions}")
    answer = {"model": ollama_name(run.model.name), "embeddings": vectors,
              "total_duration": int((time.monotonic() - run.started) * 1e9),
              "load_duration": int((run.entered - run.started) * 1e9)}
    if tokens is not None:
        answer["prompt_eval_count"] = tokens
    return json_response(answer)


@ollama_endpoint
async def embeddings(request: Any) -> Any:
    """The older single-text route: ``prompt`` in, ``embedding`` out (not normalized, as Ollama's)."""
    body = await read_json(request)
    check_fields(body, EMBEDDINGS_FIELDS, "/api/embeddings")
    prompt = field(body, "prompt", str)
    _, vectors, _ = await _vectors(request, body, [prompt], {})
    return json_response({"embedding": vectors[0]})


def routes() -> list:
    from starlette.routing import Route

    return [
        Route("/api/chat", chat, methods=["POST"]),
        Route("/api/generate", generate, methods=["POST"]),
        Route("/api/embed", embed, methods=["POST"]),
        Route("/api/embeddings", embeddings, methods=["POST"]),
    ]
