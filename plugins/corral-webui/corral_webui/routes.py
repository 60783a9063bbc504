"""The web UI's routes: the page at ``/``, its files under ``/ui/``, its JSON under ``/corral/ui/api/``.

The page and its files are ``public`` (a browser fetches them before it has a key); every JSON route
keeps the key rule: reading the library, the runtime and the monitor takes any key (``inference``),
changing something (settings, name and description, removal, LoRAs, components, import, scan, the load preview) a
``full`` key (``management``). Loads, unloads and chats go through the server's own routes (``/corral/load``,
``/v1/chat/completions``, ...).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any, AsyncIterator

from corral.api import InvalidRequest, http_endpoint, service_of

from corral_webui import views

STATIC = Path(__file__).parent / "static"
API = "/corral/ui/api"
#: Seconds between two monitor points, unless the page asks for another pace (within these bounds).
MONITOR_INTERVAL = 0.5
MONITOR_BOUNDS = (0.2, 10.0)

_estimates = views.Estimates()


def _json(data: Any, status: int = 200) -> Any:
    from starlette.responses import JSONResponse

    return JSONResponse(data, status)


async def _body(request: Any) -> dict:
    raw = await request.body()
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise InvalidRequest("the body is not JSON") from None
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    return body


async def _in_library(request: Any, fn: Any, *args: Any) -> Any:
    """``fn(library, runtime, *args)`` in a worker thread, with that thread's library."""
    service = service_of(request)
    runtime = service.runtime
    return await service.in_thread(lambda: fn(runtime.lib(), runtime, *args))


async def index(request: Any) -> Any:
    from starlette.responses import FileResponse

    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


@http_endpoint
async def info(request: Any) -> Any:
    from corral import __version__

    service = service_of(request)
    host = service.runtime.host
    watchdog = service.watchdog
    return _json({
        "version": __version__,
        "categories": host.category_names(),
        "threshold": watchdog.threshold if watchdog is not None else None,
        "keep_alive": service.runtime.keep_alive,
        "layouts": views.layouts(host),
    })


@http_endpoint
async def models(request: Any) -> Any:
    return _json({"models": await _in_library(request, views.models)})


@http_endpoint
async def model_detail(request: Any) -> Any:
    return _json(await _in_library(request, views.detail, request.path_params["ref"]))


def on_model(view: Any) -> Any:
    """An endpoint that runs ``view(library, runtime, ref, body)`` for the ``{ref}`` of its path."""

    @http_endpoint
    async def endpoint(request: Any) -> Any:
        body = await _body(request)
        return _json(await _in_library(request, view, request.path_params["ref"], body))

    endpoint.__name__ = view.__name__
    return endpoint


@http_endpoint
async def plan(request: Any) -> Any:
    body = await _body(request)
    ref = body.get("model")
    if not isinstance(ref, str) or not ref:
        raise InvalidRequest("field 'model': the model to load")
    overrides = body.get("settings") or {}
    if not isinstance(overrides, dict):
        raise InvalidRequest("field 'settings' must be an object")
    return _json(await _in_library(request, views.plan, ref, overrides, body.get("loras") or []))


@http_endpoint
async def runtime_table(request: Any) -> Any:
    service = service_of(request)
    rows = await service.in_thread(views.runtime_rows, service.runtime, _estimates)
    return _json({"models": rows})


@http_endpoint
async def import_model(request: Any) -> Any:
    body = await _body(request)
    return _json(await _in_library(request, views.import_one, body))


@http_endpoint
async def scan_folder(request: Any) -> Any:
    body = await _body(request)
    return _json(await _in_library(request, lambda lib, rt: views.scan_folder(lib, body)))


@http_endpoint
async def monitor(request: Any) -> Any:
    """Server-sent events: one reading of the machine per interval (``?interval=SECONDS``)."""
    from starlette.responses import StreamingResponse

    try:
        interval = float(request.query_params.get("interval", MONITOR_INTERVAL))
    except ValueError:
        raise InvalidRequest("interval: seconds between two points, e.g. 1") from None
    interval = min(max(interval, MONITOR_BOUNDS[0]), MONITOR_BOUNDS[1])
    service = service_of(request)

    async def points() -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        due = loop.time()
        while True:
            point = await service.in_thread(views.reading, service.runtime, service.watchdog)
            yield f"data: {json.dumps(point)}\n\n"
            if await request.is_disconnected():
                return
            # On a fixed beat: the time a reading takes does not stretch the interval.
            due = max(due + interval, loop.time())
            await asyncio.sleep(due - loop.time())

    return StreamingResponse(points(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def routes() -> list[tuple[Any, str]]:
    """(route, scope) pairs for ``register_routes``."""
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    return [
        (Route("/", index, methods=["GET"]), "public"),
        (Mount("/ui", app=StaticFiles(directory=STATIC), name="corral-ui"), "public"),
        (Route(f"{API}/info", info, methods=["GET"]), "inference"),
        (Route(f"{API}/models", models, methods=["GET"]), "inference"),
        (Route(f"{API}/models/{{ref:path}}", model_detail, methods=["GET"]), "inference"),
        (Route(f"{API}/runtime", runtime_table, methods=["GET"]), "inference"),
        (Route(f"{API}/monitor", monitor, methods=["GET"]), "inference"),
        (Route(f"{API}/settings/{{ref:path}}", on_model(views.update_settings), methods=["POST"]), "management"),
        (Route(f"{API}/plan", plan, methods=["POST"]), "management"),
        (Route(f"{API}/edit/{{ref:path}}", on_model(views.edit), methods=["POST"]), "management"),
        (Route(f"{API}/remove/{{ref:path}}", on_model(views.remove), methods=["POST"]), "management"),
        (Route(f"{API}/lora/add/{{ref:path}}", on_model(views.add_lora), methods=["POST"]), "management"),
        (Route(f"{API}/lora/weight/{{ref:path}}", on_model(views.set_lora_weight), methods=["POST"]), "management"),
        (Route(f"{API}/lora/remove/{{ref:path}}", on_model(views.remove_lora), methods=["POST"]), "management"),
        (Route(f"{API}/component/add/{{ref:path}}", on_model(views.add_component), methods=["POST"]), "management"),
        (Route(f"{API}/component/remove/{{ref:path}}", on_model(views.remove_component), methods=["POST"]), "management"),
        (Route(f"{API}/import", import_model, methods=["POST"]), "management"),
        (Route(f"{API}/scan", scan_folder, methods=["POST"]), "management"),
    ]
