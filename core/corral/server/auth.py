"""Which API key a request presents: ``Authorization: Bearer KEY`` (OpenAI's clients, the corral CLI) or
``x-api-key: KEY`` (Anthropic's clients). The guard middleware (:mod:`corral.server.guards`) checks it
against the server's :class:`corral.keys.KeyRing` on every route."""

from __future__ import annotations

from typing import Mapping


def presented_key(headers: Mapping[bytes, bytes]) -> tuple[bytes | None, bool]:
    """The key in the request's (lower-case) headers, and whether it tried to send one at all."""
    given = headers.get(b"authorization")
    if given is not None and given[:7].lower() == b"bearer ":
        return given[7:].strip() or None, True
    api_key = headers.get(b"x-api-key")
    if api_key is not None:
        return api_key.strip() or None, True
    return None, given is not None
