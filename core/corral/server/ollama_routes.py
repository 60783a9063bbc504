"""Ollama's API under ``/api/``, in Ollama's request and response shapes: version, tags, show, ps, pull,
delete, copy here; chat, generate and embeddings in :mod:`corral.server.ollama_generate`.

Ollama clients name models ``name:tag``; a Corral name without a tag is listed as ``name:latest`` and
``name`` or ``name:latest`` both find it (nothing is renamed). Errors are Ollama's ``{"error": "..."}``
with Corral's status codes (a full queue is 503 with Retry-After, as on every surface).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
from datetime import datetime, timedelta, timezone
from typing import Any, Awaitable, Callable

from corral import __version__
from corral.convert import to_data
from corral.errors import CorralError, InvalidRequest, NotFound
from corral.records import ComponentKind, Model
from corral.server.bodies import check_fields, field, read_json
from corral.server.generation import json_response, service
from corral.server.responses import endpoint, log

#: The Ollama version ``/api/version`` reports: clients gate features on it (GitHub Copilot's
#: bring-your-own-model needs 0.6.4 or later; ``think`` came with 0.9).
OLLAMA_VERSION = "0.9.0"
#: Categories the Ollama routes can serve (``/api/tags`` lists only these).
SERVED = ("chat", "multimodal", "text-generation", "embedding")
#: Corral's load settings under their Ollama option names.
LOAD_OPTIONS = {"num_ctx": "n_ctx", "num_gpu": "n_gpu_layers", "num_thread": "threads"}
#: What ``expires_at`` says of a model kept until asked (Ollama's "forever" is also centuries away).
FOREVER = "2318-01-01T00:00:00Z"


def ollama_endpoint(handler: Callable[[Any], Awaitable[Any]]) -> Callable[[Any], Awaitable[Any]]:
    """:func:`corral.server.responses.endpoint`, with the error body in Ollama's shape ``{"error": "..."}``
    (the status and headers, Retry-After included, stay)."""
    from starlette.responses import JSONResponse

    inner = endpoint(handler)

    @functools.wraps(handler)
    async def wrapped(request: Any) -> Any:
        response = await inner(request)
        if response.status_code < 400 or not isinstance(response, JSONResponse):
            return response
        error = json.loads(response.body).get("error")
        message = error.get("message") if isinstance(error, dict) else error
        headers = {k: v for k, v in response.headers.items() if k.lower() == "retry-after"}
        return JSONResponse({"error": message}, response.status_code, headers=headers)

    return wrapped


def error_line(exc: BaseException) -> dict:
    """An error in the middle of an NDJSON stream (the status line is gone): Ollama's ``{"error"}`` line."""
    if isinstance(exc, CorralError):
        return {"error": str(exc)}
    log.error("stream failed", exc_info=exc)
    return {"error": f"internal error: {type(exc).__name__}: {exc}"}


def ndjson(lines: Any) -> Any:
    """An ``application/x-ndjson`` answer of the objects the async iterator ``lines`` yields."""
    from starlette.responses import StreamingResponse

    async def encoded():
        async for line in lines:
            yield json.dumps(line, ensure_ascii=False) + "\n"

    return StreamingResponse(encoded(), media_type="application/x-ndjson", headers={"Cache-Control": "no-cache"})


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


# --- names and model facts ------------------------------------------------------------------------------


def ollama_name(name: str) -> str:
    """How Ollama clients see a Corral name: ``name:latest`` unless it carries a tag already."""
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


def model_field(body: dict) -> str:
    """The model a request names: ``model``, or ``name`` as older Ollama clients send it."""
    value = field(body, "model", str, None) or field(body, "name", str, None)
    if not value:
        raise InvalidRequest("the request needs the field 'model'")
    return value


def find_model(svc: Any, name: str) -> Model:
    """The library model an Ollama name means (in a worker thread): the name as given, else without
    ``:latest``. Loaded models are found without the database."""
    candidates = [name]
    if name.endswith(":latest"):
        candidates.append(name[: -len(":latest")])
    missed = ""
    for candidate in candidates:
        entry = svc.runtime.find(candidate)
        if entry is not None:
            return entry.model
        try:
            return svc.runtime.lib().store.get_model(candidate)
        except NotFound as exc:  # the store's suggestion, for the name as given or without :latest
            suggests = "did you mean" in str(exc) or "catalog has" in str(exc)
            missed = missed or (str(exc).partition("; ")[2] if suggests else "")
    hint = missed
    raise NotFound(f"model {name!r} not found; {hint + '; ' if hint else ''}`corral ls` lists the library, "
                   f"/api/pull downloads one")


def parameter_size(count: int | None) -> str:
    """Parameters as Ollama writes them: ``268.10M``, ``4.3B``, ``7B``."""
    if not count:
        return ""
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if count >= scale:
            value = count / scale
            if unit == "B":
                return f"{value:.0f}B" if value == int(value) else f"{value:.1f}B"
            return f"{value:.2f}{unit}"
    return str(count)


def digest(model: Model) -> str:
    """The file's sha256 when known, else one derived from the record id (stable, not the bytes')."""
    return model.sha256 or hashlib.sha256(model.id.encode()).hexdigest()


def details(model: Model) -> dict:
    facts = model.facts
    family = facts.architecture or model.category.value
    return {"parent_model": "", "format": model.format.value, "family": family, "families": [family],
            "parameter_size": parameter_size(facts.parameters),
            "quantization_level": facts.quantization or facts.dtype or ""}


def chat_template(svc: Any, model: Model) -> str:
    """The chat template the model is served with: the loaded one's, else the one its GGUF carries."""
    entry = svc.runtime.find(model.id)
    template = getattr(getattr(entry.handle, "template", None), "source", None) if entry is not None else None
    if isinstance(template, str):
        return template
    if model.format.value == "gguf":
        from corral.detect.gguf import read_gguf_header

        try:
            value = read_gguf_header(model.path).metadata.get("tokenizer.chat_template")
        except Exception:  # an unreadable header leaves the template unknown, show still answers
            return ""
        return value if isinstance(value, str) else ""
    return ""


def capabilities(model: Model, template: str) -> list[str]:
    """Ollama's capability words for ``model``: ``completion``, ``vision``, ``tools``, ``thinking``,
    ``embedding``. Every Corral chat model takes tools (through its template, or a system-prompt
    description where the template has no place for them)."""
    category = model.category.value
    if category == "embedding":
        return ["embedding"]
    caps = ["completion"]
    if category == "multimodal" or model.component(ComponentKind.MMPROJ) is not None:
        caps.append("vision")
    if category in ("chat", "multimodal", "text-generation"):
        caps.append("tools")
    if "</think>" in template or "enable_thinking" in template:
        caps.append("thinking")
    return caps


def model_info(model: Model) -> dict:
    """Ollama's ``model_info``: GGUF-style keys, ``<arch>.context_length`` among them."""
    facts = model.facts
    arch = facts.architecture or model.category.value
    info: dict[str, Any] = {"general.architecture": arch, "general.basename": model.name}
    if facts.parameters:
        info["general.parameter_count"] = facts.parameters
    for key, value in (("context_length", facts.context_length),
                       ("embedding_length", facts.embedding_dims or facts.hidden_size),
                       ("block_count", facts.layers), ("attention.head_count", facts.heads),
                       ("attention.head_count_kv", facts.kv_heads)):
        if value is not None:
            info[f"{arch}.{key}"] = value
    if facts.vocab_size:
        info["tokenizer.ggml.vocab_size"] = facts.vocab_size
    return info


def _parameters(model: Model) -> str:
    """The saved settings that have Ollama option names, as Ollama's ``parameters`` text."""
    names = {corral: ollama for ollama, corral in LOAD_OPTIONS.items()}
    lines = []
    for key, value in sorted(model.settings.items()):
        if value is not None and key in names:
            lines.append(f"{names[key]:<16}{value}")
    return "\n".join(lines)


# --- routes ---------------------------------------------------------------------------------------------


@ollama_endpoint
async def version(request: Any) -> Any:
    return json_response({"version": OLLAMA_VERSION, "corral_version": __version__})


def _tag(model: Model) -> dict:
    name = ollama_name(model.name)
    return {"name": name, "model": name, "modified_at": model.updated.isoformat(), "size": model.size,
            "digest": digest(model), "details": details(model)}


@ollama_endpoint
async def tags(request: Any) -> Any:
    svc = service(request)
    models = await svc.in_thread(lambda: [m for m in svc.servable_models() if m.category.value in SERVED])
    return json_response({"models": [_tag(m) for m in models]})


@ollama_endpoint
async def show(request: Any) -> Any:
    body = await read_json(request)
    check_fields(body, frozenset({"model", "name", "verbose"}), "/api/show")
    svc = service(request)
    name = model_field(body)

    def look() -> tuple[Model, str]:
        model = find_model(svc, name)
        return model, chat_template(svc, model)

    model, template = await svc.in_thread(look)
    parameters = _parameters(model)
    modelfile = f"# Modelfile of Corral's model {model.name}\nFROM {model.path}\n"
    modelfile += "".join(f"PARAMETER {line}\n" for line in parameters.splitlines())
    return json_response({
        "modelfile": modelfile, "parameters": parameters, "template": template, "license": "",
        "details": details(model), "model_info": model_info(model), "capabilities": capabilities(model, template),
        "modified_at": model.updated.isoformat(),
        "corral": {"id": model.id, "name": model.name, "category": model.category.value,
                   "format": model.format.value, "path": str(model.path), "settings": to_data(model.settings)},
    })


def _context_length(entry: Any) -> int | None:
    n_ctx = entry.settings.get("n_ctx")
    if n_ctx:
        return int(n_ctx)
    return entry.model.facts.context_length


@ollama_endpoint
async def ps(request: Any) -> Any:
    runtime = service(request).runtime
    by_id = {e.model.id: e for e in runtime.entries()}
    now = datetime.now(timezone.utc)
    models = []
    for info in runtime.ps():
        entry = by_id.get(info.id)
        if entry is None:  # unloaded between the two lookups
            continue
        name = ollama_name(info.name)
        expires = FOREVER if info.expires_in is None else \
            (now + timedelta(seconds=info.expires_in)).isoformat().replace("+00:00", "Z")
        models.append({"name": name, "model": name, "size": info.ram + info.vram, "digest": digest(entry.model),
                       "details": details(entry.model), "expires_at": expires, "size_vram": info.vram,
                       "context_length": _context_length(entry), "corral": to_data(info)})
    return json_response({"models": models})


@ollama_endpoint
async def delete(request: Any) -> Any:
    """Remove the record (and its LoRA records); the files stay where they are."""
    from starlette.responses import Response

    body = await read_json(request)
    check_fields(body, frozenset({"model", "name"}), "/api/delete")
    svc = service(request)
    name = model_field(body)

    def remove() -> None:
        svc.runtime.lib().remove(find_model(svc, name).id)

    await svc.in_thread(remove)
    return Response(status_code=200)


@ollama_endpoint
async def copy(request: Any) -> Any:
    """A second name for the same files (:meth:`corral.library.Library.copy`)."""
    from starlette.responses import Response

    body = await read_json(request)
    check_fields(body, frozenset({"source", "destination"}), "/api/copy")
    svc = service(request)
    source = field(body, "source", str)
    destination = field(body, "destination", str)
    if destination.endswith(":latest"):
        destination = destination[: -len(":latest")]

    def twin() -> None:
        svc.runtime.lib().copy(find_model(svc, source).id, destination)

    await svc.in_thread(twin)
    return Response(status_code=200)


# --- pull -----------------------------------------------------------------------------------------------


class _Progress:
    """A :class:`corral.pull.Meter` that turns a pull's progress into Ollama's status lines on a queue
    the event loop reads (``None`` ends it)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue) -> None:
        self._loop, self._queue = loop, queue
        self._file: dict[str, Any] = {}
        self._sent = 0

    def _put(self, line: dict) -> None:
        self._loop.call_soon_threadsafe(self._queue.put_nowait, line)

    def begin(self, files: int, total: int | None, have: int) -> None:
        self._put({"status": "pulling manifest"})

    def start_file(self, name: str, size: int | None, have: int) -> None:
        self._file = {"status": f"pulling {name}", "digest": name, "total": size or 0, "completed": have}
        self._sent = have
        self._put(dict(self._file))

    def advance(self, nbytes: int) -> None:
        if self._file:
            self._file["completed"] += nbytes
            # One line per percent (or per MiB of a file of unknown size), not one per chunk.
            step = max(self._file["total"] // 100, 1 << 20)
            if self._file["completed"] - self._sent >= step:
                self._sent = self._file["completed"]
                self._put(dict(self._file))

    def rewind(self, nbytes: int) -> None:
        if self._file:
            self._file["completed"] = max(0, self._file["completed"] - nbytes)

    def end_file(self, name: str, fetched: int, reused: bool) -> None:
        if self._file:
            self._put({**self._file, "completed": self._file["total"] or self._file["completed"]})
        self._file = {}

    def note(self, text: str) -> None:
        self._put({"status": text})

    def end(self) -> None:
        pass


def pull_target(name: str, sources: Any) -> tuple[Any, str | None, str | None]:
    """(the parsed reference, the quantization, the library name) of an Ollama pull name.

    ``hf.co/org/repo:Q4_K_M`` is Ollama's way to pull a quantization from Hugging Face; otherwise the
    name is a hub reference (``org/repo``, ``org/repo:revision``, a hub link). The pulled model is
    recorded under the name the client pulled (without ``:latest``), so the same name then finds it.
    """
    from corral.pull import parse_ref

    quant = None
    ref = name[: -len(":latest")] if name.endswith(":latest") else name
    for prefix in ("hf.co/", "huggingface.co/"):
        if ref.startswith(prefix):
            ref = ref[len(prefix):]
            repo, _, tag = ref.partition(":")
            ref, quant = repo, (tag or None)
            wanted = parse_ref(ref, sources, "huggingface")
            break
    else:
        wanted = parse_ref(ref, sources)
    return wanted, quant, name[: -len(":latest")] if name.endswith(":latest") else name


@ollama_endpoint
async def pull(request: Any) -> Any:
    """Download through an installed hub plugin; NDJSON progress unless ``stream`` is false."""
    from corral.pull import get_source
    from corral.pull import pull as run_pull

    body = await read_json(request)
    check_fields(body, frozenset({"model", "name", "stream", "insecure"}), "/api/pull")
    svc = service(request)
    name = model_field(body)
    stream = field(body, "stream", bool, True)
    field(body, "insecure", bool, False)  # hubs are reached as their plugin reaches them
    host = svc.runtime.host
    wanted, quant, record = pull_target(name, host.sources)
    hub = get_source(host, wanted.source)
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()
    meter = _Progress(loop, queue)

    def work() -> Any:
        lib = svc.runtime.lib()
        existing = None
        try:
            existing = lib.store.get_model(record)
        except NotFound:
            pass
        return run_pull(lib, hub, wanted.repo, revision=wanted.revision, names=wanted.files, quant=quant,
                        name=None if existing is not None else record, meter=meter)

    task = asyncio.ensure_future(svc.in_thread(work, load=True))
    task.add_done_callback(lambda _: queue.put_nowait(None))
    if not stream:
        await task
        return json_response({"status": "success"})

    async def lines():
        while True:
            line = await queue.get()
            if line is None:
                break
            yield line
        try:
            task.result()
        except BaseException as exc:
            yield error_line(exc)
            return
        yield {"status": "verifying sha256 digest"}
        yield {"status": "writing manifest"}
        yield {"status": "success"}

    return ndjson(lines())


def routes() -> list:
    from starlette.routing import Route

    return [
        Route("/api/version", version, methods=["GET"]),
        Route("/api/tags", tags, methods=["GET"]),
        Route("/api/show", show, methods=["POST"]),
        Route("/api/ps", ps, methods=["GET"]),
        Route("/api/pull", pull, methods=["POST"]),
        Route("/api/delete", delete, methods=["DELETE"]),
        Route("/api/copy", copy, methods=["POST"]),
    ]
