"""Management routes: load, unload, list loaded models, server and system status, health."""

from __future__ import annotations

import os
import time
from typing import Any

from corral import __version__
from corral.convert import to_data
from corral.errors import InvalidRequest
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
    before = {e.model.id: e for e in service.runtime.entries()}
    started = time.monotonic()
    entry = await service.in_thread(
        service.runtime.load, ref, loras=loras, settings=settings, force=force, keep_alive=keep_alive, load=True
    )
    reused = before.get(entry.model.id) is entry
    return _json({"model": to_data(entry.info()), "reused": reused, "seconds": round(time.monotonic() - started, 3)})


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


@endpoint
async def ps(request: Any) -> Any:
    return _json({"models": to_data(_service(request).runtime.ps())})


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
        "memory": {"total": memory.total, "available": memory.available, "used": memory.used,
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
        Route("/corral/status", status, methods=["GET"]),
        Route("/corral/health", health, methods=["GET"]),
    ]
