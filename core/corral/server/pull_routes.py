"""Pulls as background jobs (``/corral/pulls``) and the hubs they come from (``/corral/hub/...``).

The jobs (:class:`corral.pull.jobs.PullJobs`) live in the library database: a restarted server resumes
those that were queued or running. Hub search and file listings go through the installed hub plugins,
as ``corral search`` and ``corral files`` do; a listing marks which GGUF variants fit in free memory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from corral.convert import to_data
from corral.errors import InvalidRequest
from corral.server.bodies import check_fields, field, read_json
from corral.server.responses import endpoint
from corral.server.service import Service

PULL_FIELDS = frozenset({"repo", "source", "files", "quant", "all", "mmproj", "dest", "library_name", "base",
                         "offline", "resume"})


def _service(request: Any) -> Service:
    return request.app.state.service


def _jobs(request: Any) -> Any:
    return request.app.state.pulls


def _json(data: Any, status: int = 200) -> Any:
    from starlette.responses import JSONResponse

    return JSONResponse(data, status)


@endpoint
async def submit(request: Any) -> Any:
    """Queue a pull: the repository is listed and the pull checked before the answer (201 and the job).
    With ``resume``, a paused or failed job of the same files is resumed instead (200 and that job)."""
    import time

    asked = time.time()
    body = await read_json(request)
    check_fields(body, PULL_FIELDS, "POST /corral/pulls")
    files = field(body, "files", list, [])
    if not all(isinstance(f, str) for f in files):
        raise InvalidRequest("field 'files' must be a list of file names")
    dest = field(body, "dest", str, None)
    job = await _service(request).in_thread(
        _jobs(request).submit, field(body, "repo", str), source=field(body, "source", str, None), files=files,
        quant=field(body, "quant", str, None), everything=field(body, "all", bool, False),
        mmproj=field(body, "mmproj", bool, True), dest=Path(dest) if dest else None,
        name=field(body, "library_name", str, None), base=field(body, "base", str, None),
        offline=field(body, "offline", bool, False), resume=field(body, "resume", bool, False), load=True,
    )
    return _json(job.view(), 201 if job.created >= asked else 200)


@endpoint
async def listing(request: Any) -> Any:
    jobs = await _service(request).in_thread(_jobs(request).list)
    return _json({"pulls": [j.view() for j in jobs]})


@endpoint
async def one(request: Any) -> Any:
    job = await _service(request).in_thread(_jobs(request).get, request.path_params["job"])
    return _json(job.view())


@endpoint
async def forget(request: Any) -> Any:
    await _service(request).in_thread(_jobs(request).forget, request.path_params["job"])
    return _json({"deleted": request.path_params["job"]})


def _action(name: str) -> Any:
    @endpoint
    async def act(request: Any) -> Any:
        jobs = _jobs(request)
        job = await _service(request).in_thread(getattr(jobs, name), request.path_params["job"], load=True)
        return _json(job.view())

    act.__name__ = name
    return act


# --- hubs ------------------------------------------------------------------------------------------------


@endpoint
async def hubs(request: Any) -> Any:
    """The installed hub plugins (the UI's source chooser)."""
    from corral.pull import DEFAULT_SOURCE

    host = _service(request).runtime.host
    return _json({"sources": [s.name for s in host.sources], "default": DEFAULT_SOURCE})


@endpoint
async def search(request: Any) -> Any:
    """``?q=QUERY&source=HUB&category=C&limit=N``: what ``corral search`` shows."""
    from corral.pull import DEFAULT_SOURCE, get_source
    from corral.records import Category

    params = request.query_params
    query = params.get("q", "").strip()
    if not query:
        raise InvalidRequest("give the search words as ?q=...")
    category = params.get("category") or None
    try:
        limit = max(1, min(100, int(params.get("limit", 20))))
    except ValueError:
        raise InvalidRequest("limit must be a number") from None
    service = _service(request)
    name = params.get("source") or DEFAULT_SOURCE

    def work() -> list:
        kind = Category(category) if category in {c.value for c in Category} else category
        return get_source(service.runtime.host, name).search(query, category=kind, limit=limit)

    hits = await service.in_thread(work, load=True)
    return _json({"source": name, "query": query, "results": to_data(hits)})


@endpoint
async def files(request: Any) -> Any:
    """``?repo=REPO[:REV]&source=HUB``: the files, GGUF variants by quantization, and which fit in memory."""
    from corral.estimate import free_memory
    from corral.pull import get_source, gguf_variants, parse_ref
    from corral.pull.fits import estimate_variants
    from corral.pull.variants import listing

    params = request.query_params
    ref = params.get("repo", "").strip()
    if not ref:
        raise InvalidRequest("name the repository as ?repo=org/name")
    service = _service(request)

    def work() -> dict:
        host = service.runtime.host
        wanted = parse_ref(ref, host.sources, params.get("source") or None)
        hub = get_source(host, wanted.source)
        snap = hub.snapshot(wanted.repo, wanted.revision)
        ram, vram = free_memory()
        return {**listing(snap), "fits": estimate_variants(hub, snap, gguf_variants(snap.files), (ram, vram)),
                "free": {"ram_bytes": ram, "vram_bytes": vram}}

    return _json(await service.in_thread(work, load=True))


def routes() -> list:
    from starlette.routing import Route

    return [
        Route("/corral/pulls", submit, methods=["POST"]),
        Route("/corral/pulls", listing, methods=["GET"]),
        Route("/corral/pulls/{job}", one, methods=["GET"]),
        Route("/corral/pulls/{job}", forget, methods=["DELETE"]),
        *(Route(f"/corral/pulls/{{job}}/{name}", _action(name), methods=["POST"])
          for name in ("pause", "resume", "cancel")),
        Route("/corral/hub", hubs, methods=["GET"]),
        Route("/corral/hub/search", search, methods=["GET"]),
        Route("/corral/hub/files", files, methods=["GET"]),
    ]
