"""The OpenAI-compatible routes: models, chat completions (SSE), completions, embeddings, rerank
(Cohere/Jina shape), image generation and speech.

A request naming a model that is not loaded loads it first (saved settings, the same load rules).
"""

from __future__ import annotations

import base64
import sys
import tempfile
import time
import uuid
from array import array
from pathlib import Path
from typing import Any

from corral.errors import CorralError, InvalidRequest
from corral.loading import choose_driver
from corral.records import ChatResult
from corral.server.bodies import (
    CHAT_FIELDS,
    COMPLETION_FIELDS,
    check_fields,
    chat_features,
    choices,
    completion_features,
    field,
    read_json,
    sampling,
    text_list,
)
from corral.server.generation import as_result as _result
from corral.server.generation import check_supported as _check_supported
from corral.server.generation import event_stream, open_stream
from corral.server.generation import json_response as _json
from corral.server.generation import service as _service
from corral.server.responses import endpoint
from corral.server.service import Service
from corral.server.streaming import sse_pieces


def _usage(prompt: int | None, completion: int | None) -> dict:
    total = None if prompt is None or completion is None else prompt + completion
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": total}


def _finish(count: int, params: dict) -> str:
    # For a driver whose stream does not say why it ended: one piece per token reaching max_tokens is "length".
    limit = params.get("max_tokens")
    return "length" if limit and count >= limit else "stop"


# --- models ------------------------------------------------------------------------------------------


def _served_by(service: Service, model: Any) -> str | None:
    """The driver serving ``model`` (the loaded one's, else the one a load would pick); in a worker thread."""
    entry = service.runtime.find(model.id)
    if entry is not None:
        return entry.driver
    try:
        return getattr(choose_driver(service.runtime.lib().host, model), "name", None)
    except CorralError:
        return None


def _model_card(model: Any, loaded: bool, driver: str | None = None) -> dict:
    return {
        "id": model.name,
        "object": "model",
        "created": int(model.created.timestamp()),
        "owned_by": "corral",
        "corral_id": model.id,
        "category": model.category.value,
        "format": model.format.value,
        "loaded": loaded,
        "driver": driver,
    }


@endpoint
async def list_models(request: Any) -> Any:
    service = _service(request)
    models = await service.in_thread(lambda: [(m, _served_by(service, m)) for m in service.servable_models()])
    loaded = {e.model.id for e in service.runtime.entries()}
    return _json({"object": "list", "data": [_model_card(m, m.id in loaded, d) for m, d in models]})


@endpoint
async def get_model(request: Any) -> Any:
    service = _service(request)
    model = await service.in_thread(service.runtime.resolve, request.path_params["model"])
    driver = await service.in_thread(_served_by, service, model)
    return _json(_model_card(model, service.runtime.find(model.id) is not None, driver))


# --- chat and completions ----------------------------------------------------------------------------


def _messages(body: dict) -> list[dict]:
    messages = field(body, "messages", list)
    if not messages:
        raise InvalidRequest("field 'messages' must hold at least one message")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise InvalidRequest(f"messages[{i}] must be an object with a 'role' and a 'content'")
        if message["role"] == "tool" and not isinstance(message.get("tool_call_id"), str):
            raise InvalidRequest(f"messages[{i}] is a tool result and needs the 'tool_call_id' it answers")
    return messages


def _total(counts: list[int | None]) -> int | None:
    return None if any(c is None for c in counts) else sum(counts)  # type: ignore[arg-type]


def _logprob_item(item: Any) -> dict:
    return {"token": item.token, "logprob": item.logprob, "bytes": list(item.bytes) or None,
            "top_logprobs": [{"token": t, "logprob": lp, "bytes": list(t.encode("utf-8"))} for t, lp in item.top]}


def _chat_logprobs(items: Any) -> dict | None:
    return None if items is None else {"content": [_logprob_item(i) for i in items], "refusal": None}


def _completion_logprobs(items: Any, offset: int = 0) -> dict | None:
    if items is None:
        return None
    offsets, position = [], offset
    for item in items:
        offsets.append(position)
        position += len(item.token)
    return {"tokens": [i.token for i in items], "token_logprobs": [i.logprob for i in items],
            "top_logprobs": [dict(i.top) for i in items], "text_offset": offsets}


def _message(result: ChatResult) -> dict:
    message: dict[str, Any] = {"role": "assistant", "content": result.text}
    if result.tool_calls:
        message["content"] = result.text or None
        message["tool_calls"] = [call.openai() for call in result.tool_calls]
    if result.reasoning:
        message["reasoning_content"] = result.reasoning
    return message


async def _generate(request: Any, kind: str) -> Any:
    """Shared by chat and completions: ``kind`` is ``chat`` or ``complete``."""
    body = await read_json(request)
    route = "/v1/chat/completions" if kind == "chat" else "/v1/completions"
    check_fields(body, CHAT_FIELDS if kind == "chat" else COMPLETION_FIELDS, route)
    ref = field(body, "model", str)
    params = sampling(body)
    stream = field(body, "stream", bool, False)
    n = choices(body, stream)
    if kind == "chat":
        inputs: list[Any] = [_messages(body)]
        params.update(chat_features(body))
    else:
        inputs = text_list(body, "prompt")
        if stream and len(inputs) > 1:
            raise InvalidRequest("stream one prompt at a time")
        params.update(completion_features(body))
    echo = kind == "complete" and field(body, "echo", bool, False)
    options = field(body, "stream_options", dict, {})
    unknown = sorted(set(options) - {"include_usage"})
    if unknown:
        raise InvalidRequest(f"stream_options.{unknown[0]} is not supported")
    include_usage = bool(options.get("include_usage"))
    ident = ("chatcmpl-" if kind == "chat" else "cmpl-") + uuid.uuid4().hex[:24]
    if stream:
        return await _stream(request, kind, ref, inputs[0], params, ident, echo=echo, include_usage=include_usage)

    def work(entry):
        _check_supported(entry, params)
        results = []
        for item in inputs:
            for i in range(n):  # several choices: one generation after another, each with its own seed
                extra = {"seed": params["seed"] + i} if n > 1 and "seed" in params else {}
                results.append(_result(getattr(entry.handle, kind)(item, **{**params, **extra})))
        return results

    entry, results = await _service(request).run(ref, kind, work)
    usage = _usage(_total([r.prompt_tokens for r in results]), _total([r.completion_tokens for r in results]))
    if kind == "chat":
        choices_ = [{"index": i, "message": _message(r), "logprobs": _chat_logprobs(r.logprobs),
                     "finish_reason": r.finish_reason} for i, r in enumerate(results)]
    else:
        choices_ = []
        for i, r in enumerate(results):
            prefix = inputs[i // n] if echo else ""
            choices_.append({"index": i, "text": prefix + r.text, "finish_reason": r.finish_reason,
                             "logprobs": _completion_logprobs(r.logprobs, len(prefix))})
    return _json({"id": ident, "object": "chat.completion" if kind == "chat" else "text_completion",
                  "created": int(time.time()), "model": entry.model.name, "choices": choices_, "usage": usage})


def _tool_call_delta(piece: Any) -> dict:
    out: dict[str, Any] = {"index": piece.index}
    function: dict[str, Any] = {"arguments": piece.arguments}
    if piece.id is not None:
        out.update(id=piece.id, type="function")
        function["name"] = piece.name
    out["function"] = function
    return out


async def _stream(
    request: Any, kind: str, ref: str, item: Any, params: dict, ident: str, *, echo: bool, include_usage: bool
) -> Any:
    """An SSE answer; the model's turn is held until the last piece (see :mod:`corral.server.streaming`)."""
    from corral.tools import Delta

    generation = await open_stream(request, ref, kind, item, params)
    entry, pieces, first = generation.entry, generation.pieces, generation.first
    if echo:
        first = item + (first or "") if not isinstance(first, Delta) else Delta(content=item + first.content,
                                                                                 logprobs=first.logprobs)
    name, created = entry.model.name, int(time.time())
    obj = "chat.completion.chunk" if kind == "chat" else "text_completion"
    started = {"role": False, "offset": 0}

    def event(choices: list, **extra: Any) -> dict:
        return {"id": ident, "object": obj, "created": created, "model": name, "choices": choices, **extra}

    def chunk(piece: Any) -> dict:
        delta_ = piece if isinstance(piece, Delta) else Delta(content=str(piece))
        logprobs = delta_.logprobs or None
        if kind == "complete":
            lp = _completion_logprobs(logprobs, started["offset"]) if logprobs else None
            started["offset"] += len(delta_.content)
            return event([{"index": 0, "text": delta_.content, "logprobs": lp, "finish_reason": None}])
        delta: dict[str, Any] = {}
        if not started["role"]:  # the first chunk names the role, as OpenAI's do
            started["role"] = True
            delta["role"] = "assistant"
        if delta_.content or not (delta_.reasoning or delta_.tool_calls):
            delta["content"] = delta_.content
        if delta_.reasoning:
            delta["reasoning_content"] = delta_.reasoning
        if delta_.tool_calls:
            delta["tool_calls"] = [_tool_call_delta(t) for t in delta_.tool_calls]
        return event([{"index": 0, "delta": delta, "logprobs": _chat_logprobs(logprobs) if logprobs else None,
                       "finish_reason": None}])

    def last(count: int) -> list[dict]:
        result = generation.result
        known = result is not None
        reason = result.finish_reason if known else _finish(count, params)
        if kind == "chat":
            delta = {} if started["role"] else {"role": "assistant", "content": ""}
            events = [event([{"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}])]
        else:
            events = [event([{"index": 0, "text": "", "logprobs": None, "finish_reason": reason}])]
        if include_usage:  # without the driver's counts, streamed pieces stand for tokens
            usage = _usage(result.prompt_tokens, result.completion_tokens) if known else _usage(None, count)
            events.append(event([], usage=usage))
        return events

    return event_stream(sse_pieces(pieces, first, chunk, last))


@endpoint
async def chat_completions(request: Any) -> Any:
    return await _generate(request, "chat")


@endpoint
async def completions(request: Any) -> Any:
    return await _generate(request, "complete")


# --- embeddings and rerank ---------------------------------------------------------------------------

EMBEDDING_FIELDS = frozenset({"model", "input", "encoding_format", "dimensions", "normalize", "batch_size", "user"})
RERANK_FIELDS = frozenset({"model", "query", "documents", "top_n", "return_documents"})
IMAGE_FIELDS = frozenset({"model", "prompt", "n", "size", "response_format", "seed", "steps", "guidance", "strength",
                          "negative_prompt", "num_frames", "image", "user"})
SPEECH_FIELDS = frozenset({"model", "input", "voice", "speed", "lang", "response_format"})


def _b64_floats(vector: list[float]) -> str:
    packed = array("f", vector)
    if sys.byteorder == "big":
        packed.byteswap()
    return base64.b64encode(packed.tobytes()).decode()


@endpoint
async def embeddings(request: Any) -> Any:
    body = await read_json(request)
    check_fields(body, EMBEDDING_FIELDS, "/v1/embeddings")
    service = _service(request)
    ref = field(body, "model", str)
    texts = text_list(body, "input")
    encoding = field(body, "encoding_format", str, "float")
    if encoding not in ("float", "base64"):
        raise InvalidRequest("encoding_format must be 'float' or 'base64'")
    dimensions = field(body, "dimensions", int, None)
    params = {
        "normalize": field(body, "normalize", bool, None),
        "batch_size": field(body, "batch_size", int, None),
        "dimensions": dimensions,  # drivers that can shorten vectors (Matryoshka) do; the check below stays
    }
    params = {k: v for k, v in params.items() if v is not None}
    def work(entry):
        vectors = entry.handle.embed(texts, **params)
        counter = getattr(entry.handle, "count_tokens", None)
        return vectors, (counter(texts) if counter is not None else None)

    entry, (vectors, counts) = await service.run(ref, "embed", work)
    tokens = None if counts is None else int(sum(counts))
    vectors = [[float(x) for x in v] for v in vectors]
    if dimensions is not None and vectors and dimensions != len(vectors[0]):
        raise InvalidRequest(f"{entry.model.name} makes {len(vectors[0])}-dimensional vectors, not {dimensions}")
    data = [
        {"object": "embedding", "index": i, "embedding": _b64_floats(v) if encoding == "base64" else v}
        for i, v in enumerate(vectors)
    ]
    return _json({"object": "list", "data": data, "model": entry.model.name,
                  "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})


@endpoint
async def rerank(request: Any) -> Any:
    body = await read_json(request)
    check_fields(body, RERANK_FIELDS, "/v1/rerank")
    service = _service(request)
    ref = field(body, "model", str)
    query = field(body, "query", str)
    raw = field(body, "documents", list)
    documents = []
    for i, doc in enumerate(raw):
        text = doc.get("text") if isinstance(doc, dict) else doc
        if not isinstance(text, str):
            raise InvalidRequest(f"documents[{i}] must be a string or an object with 'text'")
        documents.append(text)
    if not documents:
        raise InvalidRequest("field 'documents' must not be empty")
    top_n = field(body, "top_n", int, None)
    return_documents = field(body, "return_documents", bool, False)
    entry, ranked = await service.run(ref, "rerank", lambda e: e.handle.rerank(query, documents, top_n=top_n))
    ranked = sorted(((int(i), float(s)) for i, s in ranked), key=lambda r: -r[1])
    if top_n is not None:
        ranked = ranked[:top_n]
    results = []
    for index, score in ranked:
        result: dict[str, Any] = {"index": index, "relevance_score": score}
        if return_documents:
            result["document"] = {"text": documents[index]}
        results.append(result)
    return _json({"id": "rerank-" + uuid.uuid4().hex[:24], "model": entry.model.name, "results": results})


# --- images and speech -------------------------------------------------------------------------------


def _size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise InvalidRequest(f"size {text!r} is not WIDTHxHEIGHT, e.g. 512x512") from None
    return width, height


@endpoint
async def images_generations(request: Any) -> Any:
    from corral.server.media import png_bytes

    body = await read_json(request)
    check_fields(body, IMAGE_FIELDS, "/v1/images/generations")
    service = _service(request)
    ref = field(body, "model", str)
    prompt = field(body, "prompt", str)
    n = field(body, "n", int, 1)
    if not 1 <= n <= 16:
        raise InvalidRequest("n must be between 1 and 16")
    if field(body, "response_format", str, "b64_json") != "b64_json":
        raise InvalidRequest("only response_format 'b64_json' is supported (images are not stored)")
    params: dict[str, Any] = {
        "steps": field(body, "steps", int, None),
        "guidance": field(body, "guidance", float, None),
        "strength": field(body, "strength", float, None),
        "negative_prompt": field(body, "negative_prompt", str, None),
        "num_frames": field(body, "num_frames", int, None),
    }
    seed = field(body, "seed", int, None)
    size = field(body, "size", str, None)
    if size and size != "auto":
        params["width"], params["height"] = _size(size)
    params = {k: v for k, v in params.items() if v is not None}
    image_b64 = field(body, "image", str, None)

    def work(entry):
        with tempfile.TemporaryDirectory(prefix="corral-image-") as tmp:
            extra = dict(params)
            if image_b64 is not None:
                source = Path(tmp) / "input.png"
                try:
                    source.write_bytes(base64.b64decode(image_b64, validate=True))
                except ValueError:
                    raise InvalidRequest("field 'image' must be a base64-encoded image") from None
                extra["image"] = source
            images = []
            for i in range(n):
                if seed is not None:
                    extra["seed"] = seed + i
                images.extend(entry.handle.imagine(prompt, **extra))
            return [base64.b64encode(png_bytes(image)).decode() for image in images]

    entry, encoded = await service.run(ref, "imagine", work)
    return _json({"created": int(time.time()), "data": [{"b64_json": b} for b in encoded]})


@endpoint
async def audio_speech(request: Any) -> Any:
    from starlette.responses import Response

    from corral.server.media import pcm16, wav_bytes

    body = await read_json(request)
    check_fields(body, SPEECH_FIELDS, "/v1/audio/speech")
    service = _service(request)
    ref = field(body, "model", str)
    text = field(body, "input", str)
    fmt = field(body, "response_format", str, "wav")
    if fmt not in ("wav", "pcm"):
        raise InvalidRequest(f"response_format {fmt!r} is not supported; use 'wav' or 'pcm' (16-bit mono)")
    params = {
        "voice": field(body, "voice", str, None),
        "speed": field(body, "speed", float, None),
        "lang": field(body, "lang", str, None),
    }
    params = {k: v for k, v in params.items() if v is not None}

    def work(entry):
        samples, rate = entry.handle.speak(text, **params)
        return (wav_bytes(samples, rate) if fmt == "wav" else pcm16(samples)), rate

    entry, (audio, rate) = await service.run(ref, "speak", work)
    media = "audio/wav" if fmt == "wav" else f"audio/L16;rate={rate};channels=1"
    return Response(audio, media_type=media, headers={"X-Sample-Rate": str(rate)})


def routes() -> list:
    from starlette.routing import Route

    return [
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/v1/models/{model:path}", get_model, methods=["GET"]),
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/completions", completions, methods=["POST"]),
        Route("/v1/embeddings", embeddings, methods=["POST"]),
        Route("/v1/rerank", rerank, methods=["POST"]),
        Route("/v1/images/generations", images_generations, methods=["POST"]),
        Route("/v1/audio/speech", audio_speech, methods=["POST"]),
    ]
