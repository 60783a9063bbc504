"""The ASGI application (Starlette): OpenAI-compatible routes, management routes, API key, errors."""

from __future__ import annotations

import contextlib
import logging
from typing import Any, AsyncIterator

from corral.runtime.runtime import Runtime
from corral.runtime.watchdog import Watchdog
from corral.server.responses import error_body
from corral.server.service import Service

log = logging.getLogger("corral.server")


def create_app(runtime: Runtime, watchdog: Watchdog | None = None, *, api_key: str | None = None,
               guards: Any = None) -> Any:
    """The server's app around ``runtime``. The watchdog runs while the app does; stopping the app
    unloads every model (each after its request in progress). Every route sits behind the guard
    middleware (:mod:`corral.server.guards`; ``guards`` is its :class:`GuardOptions`)."""
    import anyio
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.responses import JSONResponse

    from corral.server import (
        anthropic_routes,
        manage_routes,
        ollama_generate,
        ollama_routes,
        openai_routes,
        pull_routes,
        responses_routes,
    )
    from corral.pull.jobs import PullJobs
    from corral.server.guards import guard_stack

    service = Service(runtime, watchdog)
    pulls = PullJobs(runtime.lib)

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        if watchdog is not None:
            watchdog.start()
        await anyio.to_thread.run_sync(pulls.start)  # resume the pulls a stopped server left
        try:
            yield
        finally:
            await anyio.to_thread.run_sync(pulls.close)
            if watchdog is not None:
                watchdog.stop()
            # Unloading waits for requests in progress: keep the event loop free meanwhile.
            await anyio.to_thread.run_sync(runtime.close)
            log.info("all models unloaded")

    async def http_error(request: Any, exc: HTTPException) -> Any:
        message = f"{request.method} {request.url.path}: {exc.detail}"
        code = "not_found" if exc.status_code == 404 else "http_error"
        return JSONResponse(error_body(message, exc.status_code, code), exc.status_code)

    middleware, guard_routes, metrics = guard_stack(runtime, watchdog, api_key=api_key, options=guards)
    app = Starlette(
        routes=openai_routes.routes() + anthropic_routes.routes() + responses_routes.routes()
        + ollama_routes.routes() + ollama_generate.routes() + manage_routes.routes() + pull_routes.routes() + guard_routes
        + plugin_routes(runtime.host),
        middleware=middleware,
        exception_handlers={HTTPException: http_error},
        lifespan=lifespan,
    )
    app.state.service = service
    app.state.pulls = pulls
    app.state.metrics = metrics
    return app


def plugin_routes(host: Any) -> list:
    """The routes plugins add through ``register_routes``, with the scope and body types each declares.

    A plugin whose hook raises, or that registers something other than a Starlette route, is recorded as
    failed (``corral plugins``) and none of its routes are served; the server still starts.
    """
    from starlette.routing import BaseRoute

    from corral.server import scopes

    added: dict[str, list[tuple[Any, str, Any]]] = {}

    def kwargs_for(plugin: str) -> dict[str, Any]:
        mine = added.setdefault(plugin, [])

        def register(route: Any, scope: str = scopes.INFERENCE, bodies: Any = None) -> None:
            if not isinstance(route, BaseRoute):
                raise TypeError(f"plugin {plugin!r} registered {route!r}, which is not a Starlette route")
            if scope not in scopes.SCOPE_NAMES:
                raise ValueError(f"plugin {plugin!r}: scope {scope!r} is not one of {', '.join(scopes.SCOPE_NAMES)}")
            mine.append((route, scope, tuple(bodies) if bodies else None))

        return {"register": register}

    routes = []
    for plugin in host.call_each("register_routes", kwargs_for):
        for route, scope, bodies in added[plugin]:
            prefix = (getattr(route, "path", "") or "/").split("{")[0]
            # A route at / declares the root page alone: as a prefix it would cover every route.
            scopes.set_route_scope(prefix, scope, exact=prefix == "/")
            if bodies:
                scopes.accept_bodies(prefix, *bodies)
            routes.append(route)
    return routes
