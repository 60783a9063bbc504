"""API key check on every route (``--api-key`` / ``CORRAL_API_KEY``): ``Authorization: Bearer KEY``."""

from __future__ import annotations

import hmac
import json
from typing import Any

from corral.server.responses import error_body


class ApiKeyMiddleware:
    """Plain ASGI middleware: answers 401 unless the request carries the key."""

    def __init__(self, app: Any, api_key: str) -> None:
        self.app = app
        self.expected = f"Bearer {api_key}".encode()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers") or ()).get(b"authorization", b"")
        if hmac.compare_digest(given, self.expected):
            await self.app(scope, receive, send)
            return
        message = "missing API key: send Authorization: Bearer KEY" if not given else "wrong API key"
        body = json.dumps(error_body(message, 401, "unauthorized")).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", b"Bearer"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
