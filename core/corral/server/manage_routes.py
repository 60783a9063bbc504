"""Management routes: load, unload, list loaded models, server and system status, health, stop."""

from __future__ import annotations

import os
import time
from typing import Any

from corral import __version__
from corral.convert import to_data
from corral.errors import InvalidRequest, Unsupported
from corral.records import Category
from corral.server.bodies import field, read_json
from corral.server.responses import endpoint
from corral.server.service import Service


def _service(request: Any) -> Service:
    return request.app.state.service


def _json(data: Any, status: int = 200) -> Any:
    from starlette.responses import JSONResponse

    return JSONResponse(data, status)


def parse_keep_alive(value: Any) -> float | None:
    """Seconds from a number or a duration ("30s", "5m", "1h"); negative or "forever" means no limit."""
    from corral.runtime.watchdog import parse_duration

    try:
        return parse_duration(value)
    except ValueError as exc:
        raise InvalidRequest(f"keep_alive: {exc}") from None


@endpoint
async def load(request: Any) -> Any:
    body = await read_json(request)
    service = _service(request)
    ref = field(body, "model", str)
    loras = field(body, "loras", list, [])
    if not all(isinstance(l, str) for l in loras):
        raise InvalidRequest("field 'loras' must be a list of LoRA names (NAME or NAME=WEIGHT)")
    settings = field(body, "settings", dict, {})
    force = field(body, "force", bool, False)
    keep_alive = parse_keep_alive(body["keep_alive"]) if body.get("keep_alive") is not None else None
    runtime = service.runtime
    before = runtime.entries()
    started = time.monotonic()
    entry = await service.in_thread(
        runtime.load, ref, loras=loras, settings=settings, force=force, keep_alive=keep_alive, load=True
    )
    reused = any(e is entry for e in before)
    return _json({"model": to_data(entry.info()), "reused": reused, "seconds": round(time.monotonic() - started, 3),
                  "unloaded": [] if reused else replaced(runtime, before, entry)})


def replaced(runtime: Any, before: list, entry: Any) -> list[dict]:
    """The models a load took out under the load rules: those of its slot that were loaded before it
    and are gone now, each with the rule in words."""
    from corral.loading.rules import same_slot, slot

    host = runtime.host
    now = {id(e) for e in runtime.entries()}
    new = entry.model.category
    out = []
    for old in before:
        if id(old) in now or old is entry or not same_slot(old.model.category, new, host):
            continue
        if old.model.category == new:
            rule = f"one {new} model at a time"
        else:
            rule = f"one {slot(new, host)} model at a time: {old.model.category} and {new} are not loaded together"
        out.append({"id": old.model.id, "name": old.model.name, "category": old.model.category.value,
                    "reason": rule})
    return out


@endpoint
async def unload(request: Any) -> Any:
    body = await read_json(request)
    runtime = _service(request).runtime
    ref = field(body, "model", str, None)
    category = field(body, "category", str, None)
    everything = field(body, "all", bool, False)
    if sum(x is not None and x is not False for x in (ref, category, everything)) != 1:
        raise InvalidRequest("give exactly one of 'model', 'category' or 'all'")
    service = _service(request)
    if ref is not None:
        models = [await service.in_thread(runtime.unload, ref, load=True)]
    elif category is not None:
        names = runtime.host.category_names()
        if category not in names:
            raise InvalidRequest(f"unknown category {category!r} ({', '.join(names)})")
        cat = Category(category)
        models = await service.in_thread(runtime.unload_category, cat, load=True)
    else:
        models = []
        for entry in runtime.entries():
            models.append(await service.in_thread(runtime.unload, entry.model.id, load=True))
    return _json({"unloaded": [m.name for m in models]})


def server_info(service: Service) -> dict:
    """The server itself, as ``corral ps`` shows it: pid, address, start time, version."""
    from corral.server.state import ServerState

    host, port = service.address or ("", 0)
    return ServerState(pid=os.getpid(), host=host, port=port, started=service.started,
                       version=__version__).describe()


@endpoint
async def ps(request: Any) -> Any:
    service = _service(request)
    return _json({"server": server_info(service), "models": to_data(service.runtime.ps())})


@endpoint
async def stop(request: Any) -> Any:
    """Stop the server once this answer is sent; every model is unloaded after its request in progress."""
    from starlette.background import BackgroundTask
    from starlette.responses import JSONResponse

    shutdown = getattr(request.app.state, "stop", None)
    if shutdown is None:
        raise Unsupported("this server runs inside another program and cannot be stopped over HTTP")
    service = _service(request)
    body = {"stopping": True, "server": server_info(service), "models": [m.name for m in service.runtime.ps()]}
    return JSONResponse(body, background=BackgroundTask(shutdown))


def system_status(host: Any, threshold: float | None = None) -> dict:
    """CPU, memory and GPUs: from :mod:`corral.monitor` when installed, else psutil and GPU plugins."""
    try:
        from corral.monitor import system_status as monitor_status
    except ImportError:
        pass
    else:
        return to_data(monitor_status(host, warn_percent=threshold, interval=None))
    import psutil

    memory = psutil.virtual_memory()
    gpus = []
    for vendor in host.gpu_vendors:
        try:
            gpus.extend(to_data(vendor().probe()))
        except Exception as exc:  # one vendor's failure leaves the rest of the status intact
            gpus.append({"vendor": vendor.name, "error": f"{type(exc).__name__}: {exc}"})
    return {
        "cpu": {"percent": psutil.cpu_percent(interval=None), "count": psutil.cpu_count()},
        "memory": {"total_bytes": memory.total, "available_bytes": memory.available, "used_bytes": memory.used,
                   "percent": memory.percent},
        "gpus": gpus,
    }


@endpoint
async def status(request: Any) -> Any:
    service = _service(request)
    runtime = service.runtime
    watchdog = service.watchdog
    system = await service.in_thread(system_status, runtime.host, watchdog.threshold if watchdog else None)
    loaded = runtime.ps()
    return _json(
        {
            "server": {
                "pid": os.getpid(),
                "version": __version__,
                "started": service.started,
                "uptime": round(time.time() - service.started, 1),
                "address": list(service.address) if service.address else None,
                "keep_alive": runtime.keep_alive,
                "max_waiting": runtime.max_waiting,
                "memory_threshold": watchdog.threshold if watchdog else None,
            },
            "system": system,
            "models": to_data(loaded),
            "queues": {
                m.name: {"busy": m.busy, "running": m.running, "parallel": m.parallel, "waiting": m.waiting,
                         "served": m.served, "rejected": m.rejected}
                for m in loaded
            },
            "events": list(watchdog.events) if watchdog else [],
        }
    )


@endpoint
async def health(request: Any) -> Any:
    return _json({"status": "ok", "pid": os.getpid(), "version": __version__})


def routes() -> list:
    from starlette.routing import Route

    return [
        Route("/corral/load", load, methods=["POST"]),
        Route("/corral/unload", unload, methods=["POST"]),
        Route("/corral/ps", ps, methods=["GET"]),
        Route("/corral/stop", stop, methods=["POST"]),
        Route("/corral/status", status, methods=["GET"]),
        Route("/corral/health", health, methods=["GET"]),
    ]
