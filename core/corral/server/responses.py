"""Responses shared by every route: OpenAI-shaped errors and the endpoint wrapper that produces them.

A :class:`corral.errors.CorralError` becomes its ``http_status`` with the body
``{"error": {"message", "type", "code", "param"}}``; ``code`` names the error class (``not_found``,
``plugin_missing``, ``queue_full``, ...). A busy model adds ``Retry-After``. Anything else is a bug: it is
logged with its traceback and answered 500, and the server goes on.
"""

from __future__ import annotations

import contextvars
import functools
import logging
from typing import Any, Awaitable, Callable

from corral.errors import Busy, CorralError, PluginMissing
from corral.server.client import error_code

log = logging.getLogger("corral.server")


def error_type(status: int) -> str:
    if status == 401:
        return "authentication_error"
    if status in (429, 503):
        return "rate_limit_error" if status == 429 else "server_busy"
    if status >= 500:
        return "server_error"
    return "invalid_request_error"


def error_body(message: str, status: int, code: str, **extra: Any) -> dict:
    return {"error": {"message": message, "type": error_type(status), "code": code, "param": None, **extra}}


def error_response(exc: CorralError) -> Any:
    from starlette.responses import JSONResponse

    status = exc.http_status
    extra = {}
    if isinstance(exc, PluginMissing) and exc.distribution:
        extra["install"] = f"pip install {exc.distribution}"
    headers = {}
    if isinstance(exc, Busy):
        headers["Retry-After"] = str(int(getattr(exc, "retry_after", 1)))
    return JSONResponse(error_body(str(exc), status, error_code(type(exc)), **extra), status, headers=headers)


#: The request the current route serves (set by :func:`endpoint`), so the service can watch whether its
#: client is still there while a model works on it.
current_request: contextvars.ContextVar[Any] = contextvars.ContextVar("corral_request", default=None)


def endpoint(handler: Callable[[Any], Awaitable[Any]]) -> Callable[[Any], Awaitable[Any]]:
    """Wrap a route: Corral errors become their HTTP answer, bugs a logged 500."""

    @functools.wraps(handler)
    async def wrapped(request: Any) -> Any:
        from starlette.responses import JSONResponse

        current_request.set(request)
        try:
            return await handler(request)
        except CorralError as exc:
            return error_response(exc)
        except Exception as exc:
            log.exception("%s %s failed", request.method, request.url.path)
            body = error_body(f"internal error: {type(exc).__name__}: {exc}", 500, "internal_error")
            return JSONResponse(body, 500)

    return wrapped
