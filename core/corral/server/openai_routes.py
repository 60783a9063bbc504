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

from corral.errors import InvalidRequest
from corral.records import ChatResult
from corral.server.bodies import field, read_json, sampling, text_list
from corral.server.responses import endpoint
from corral.server.service import Service
from corral.server.streaming import PieceStream, sse_pieces


def _service(request: Any) -> Service:
    return request.app.state.service


def _json(data: Any, status: int = 200) -> Any:
    from starlette.responses import JSONResponse

    return JSONResponse(data, status)


def _result(value: Any) -> ChatResult:
    """Drivers answer a ChatResult; a plain string is accepted too."""
    return value if isinstance(value, ChatResult) else ChatResult(text=str(value))


def _usage(prompt: int | None, completion: int | None) -> dict:
    total = None if prompt is None or completion is None else prompt + completion
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": total}


def _finish(count: int, params: dict) -> str:
    # For a driver whose stream does not say why it ended: one piece per token reaching max_tokens is "length".
    limit = params.get("max_tokens")
    return "length" if limit and count >= limit else "stop"


# --- models ------------------------------------------------------------------------------------------


def _model_card(model: Any, loaded: bool) -> dict:
    return {
        "id": model.name,
        "object": "model",
        "created": int(model.created.timestamp()),
        "owned_by": "corral",
        "corral_id": model.id,
        "category": model.category.value,
        "format": model.format.value,
        "loaded": loaded,
    }


@endpoint
async def list_models(request: Any) -> Any:
    service = _service(request)
    models = await service.in_thread(lambda: list(service.servable_models()))
    loaded = {e.model.id for e in service.runtime.entries()}
    return _json({"object": "list", "data": [_model_card(m, m.id in loaded) for m in models]})


@endpoint
async def get_model(request: Any) -> Any:
    service = _service(request)
    model = await service.in_thread(service.runtime.resolve, request.path_params["model"])
    return _json(_model_card(model, service.runtime.find(model.id) is not None))


# --- chat and completions ----------------------------------------------------------------------------


def _messages(body: dict) -> list[dict]:
    messages = field(body, "messages", list)
    if not messages:
        raise InvalidRequest("field 'messages' must hold at least one message")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise InvalidRequest(f"messages[{i}] must be an object with a 'role' and a 'content'")
    return messages


def _total(counts: list[int | None]) -> int | None:
    return None if any(c is None for c in counts) else sum(counts)  # type: ignore[arg-type]


async def _generate(request: Any, kind: str) -> Any:
    """Shared by chat and completions: ``kind`` is ``chat`` or ``complete``."""
    body = await read_json(request)
    ref = field(body, "model", str)
    params = sampling(body)
    stream = field(body, "stream", bool, False)
    if kind == "chat":
        inputs: list[Any] = [_messages(body)]
    else:
        inputs = text_list(body, "prompt")
        if stream and len(inputs) > 1:
            raise InvalidRequest("stream one prompt at a time")
    echo = kind == "complete" and field(body, "echo", bool, False)
    include_usage = bool(field(body, "stream_options", dict, {}).get("include_usage"))
    ident = ("chatcmpl-" if kind == "chat" else "cmpl-") + uuid.uuid4().hex[:24]
    if stream:
        return await _stream(request, kind, ref, inputs[0], params, ident, echo=echo, include_usage=include_usage)

    def work(entry):
        return [_result(getattr(entry.handle, kind)(item, **params)) for item in inputs]

    entry, results = await _service(request).run(ref, kind, work)
    usage = _usage(_total([r.prompt_tokens for r in results]), _total([r.completion_tokens for r in results]))
    if kind == "chat":
        message = {"role": "assistant", "content": results[0].text}
        choices = [{"index": 0, "message": message, "logprobs": None, "finish_reason": results[0].finish_reason}]
    else:
        choices = [
            {"index": i, "text": (inputs[i] if echo else "") + r.text, "logprobs": None,
             "finish_reason": r.finish_reason}
            for i, r in enumerate(results)
        ]
    return _json({"id": ident, "object": "chat.completion" if kind == "chat" else "text_completion",
                  "created": int(time.time()), "model": entry.model.name, "choices": choices, "usage": usage})


async def _stream(
    request: Any, kind: str, ref: str, item: Any, params: dict, ident: str, *, echo: bool, include_usage: bool
) -> Any:
    """An SSE answer; the model's turn is held until the last piece (see :mod:`corral.server.streaming`)."""
    from starlette.responses import StreamingResponse

    entry, turn = await _service(request).enter(ref, kind)
    handle = entry.handle

    ended: dict[str, Any] = {}

    def produce():
        try:
            # A driver's stream may return a ChatResult: why it ended and the token counts.
            ended["result"] = yield from getattr(handle, kind)(item, stream=True, **params)
        finally:
            entry.touch()

    pieces = PieceStream(turn, produce)
    first = await pieces.next()  # errors before the first piece still get a proper status code
    if echo:
        first = item + (first or "")
    name, created = entry.model.name, int(time.time())
    obj = "chat.completion.chunk" if kind == "chat" else "text_completion"
    started = {"role": False}

    def event(choices: list, **extra: Any) -> dict:
        return {"id": ident, "object": obj, "created": created, "model": name, "choices": choices, **extra}

    def chunk(piece: str) -> dict:
        if kind == "complete":
            return event([{"index": 0, "text": piece, "logprobs": None, "finish_reason": None}])
        delta = {"content": piece}
        if not started["role"]:  # the first chunk names the role, as OpenAI's do
            started["role"] = True
            delta = {"role": "assistant", "content": piece}
        return event([{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}])

    def last(count: int) -> list[dict]:
        result = ended.get("result")
        known = isinstance(result, ChatResult)
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

    return StreamingResponse(sse_pieces(pieces, first, chunk, last), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@endpoint
async def chat_completions(request: Any) -> Any:
    return await _generate(request, "chat")


@endpoint
async def completions(request: Any) -> Any:
    return await _generate(request, "complete")


# --- embeddings and rerank ---------------------------------------------------------------------------


def _b64_floats(vector: list[float]) -> str:
    packed = array("f", vector)
    if sys.byteorder == "big":
        packed.byteswap()
    return base64.b64encode(packed.tobytes()).decode()


@endpoint
async def embeddings(request: Any) -> Any:
    body = await read_json(request)
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
    entry, vectors = await service.run(ref, "embed", lambda e: e.handle.embed(texts, **params))
    vectors = [[float(x) for x in v] for v in vectors]
    if dimensions is not None and vectors and dimensions != len(vectors[0]):
        raise InvalidRequest(f"{entry.model.name} makes {len(vectors[0])}-dimensional vectors, not {dimensions}")
    data = [
        {"object": "embedding", "index": i, "embedding": _b64_floats(v) if encoding == "base64" else v}
        for i, v in enumerate(vectors)
    ]
    return _json({"object": "list", "data": data, "model": entry.model.name,
                  "usage": {"prompt_tokens": None, "total_tokens": None}})


@endpoint
async def rerank(request: Any) -> Any:
    body = await read_json(request)
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
