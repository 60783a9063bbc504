"""Limits against slow, large and hostile requests, and what management bodies may name.

- :class:`Limits`: body size, header and body timeouts, concurrent connections, JSON nesting depth.
- :func:`json_depth_exceeds`: nesting depth checked before any JSON parser sees the body (Python's parser
  recurses, so a deep body would otherwise be a RecursionError inside a route).
- :func:`check_hub_ref`, :func:`check_local_path`, :func:`check_management_body`: pull and import through
  the API take hub references and paths under the allowed roots only, never URLs to arbitrary hosts (SSRF)
  or ``..`` paths. The guard middleware applies them to the routes in :data:`PULL_ROUTES` and to path
  fields of every management body; routes may call them too.
- :func:`guarded_protocol`: uvicorn's HTTP protocol with a deadline for a request's headers, so a client
  sending one byte a second is dropped instead of holding a connection.
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Any, Iterable, Sequence

import attrs

from corral.errors import Forbidden, InvalidRequest

MiB = 1024 * 1024


@attrs.frozen
class Limits:
    """What one request may take."""

    #: Largest request body in bytes (base64 images included).
    max_body: int = 32 * MiB
    #: Seconds from a request's first byte to the end of its headers.
    header_timeout: float = 10.0
    #: Seconds to receive a whole request body once the headers are in.
    body_timeout: float = 60.0
    #: Open connections at once; requests beyond are answered 503.
    max_connections: int = 1000
    #: Deepest nesting of arrays and objects in a JSON body.
    max_depth: int = 64


# --- JSON nesting -----------------------------------------------------------------------------------

_TOKENS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')


def json_depth_exceeds(body: bytes, limit: int) -> bool:
    """Whether ``body`` nests arrays and objects deeper than ``limit`` (strings are skipped)."""
    if body.count(b"[") + body.count(b"{") <= limit:  # cannot be deeper than the brackets it has
        return False
    depth = 0
    for match in _TOKENS.finditer(body):
        token = match.group()
        if token in (b"[", b"{"):
            depth += 1
            if depth > limit:
                return True
        elif token in (b"]", b"}"):
            depth -= 1
    return False


# --- hub references ---------------------------------------------------------------------------------

#: Hub hosts a reference may name (``hf.co/org/repo:Q4_K_M``, ``https://huggingface.co/org/repo``).
HUB_HOSTS = frozenset({"huggingface.co", "hf.co", "www.huggingface.co", "modelscope.cn", "www.modelscope.cn",
                       "modelscope.ai", "www.modelscope.ai"})
_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")


def check_hub_ref(ref: Any, field: str = "model", link_prefixes: Iterable[str] = ()) -> str:
    """``ref`` when it names a model on a hub: ``name[:tag]``, ``org/name[:tag]``, ``HUB/org/name[:tag]``
    or a link to a known hub (or one of ``link_prefixes``, the installed sources' own). Anything else —
    a URL to another host, an address, ``..``, a path — is :class:`Forbidden`."""
    if not isinstance(ref, str):
        raise InvalidRequest(f"field {field!r} must be a string")
    text = ref.strip()

    def refuse(why: str) -> Forbidden:
        return Forbidden(f"field {field!r}: {text[:80]!r} is not a hub reference ({why}); "
                         f"give org/name[:tag] or a link to the hub")

    if not text or len(text) > 512:
        raise refuse("empty or too long")
    if any(c.isspace() or ord(c) < 32 or c in "\\@%?#" for c in text) or ".." in text:
        raise refuse("it holds a space, a control character, \\, @, %, ?, # or ..")
    if "://" in text:
        lowered = text.lower()
        if any(p and lowered.startswith(p.lower()) for p in link_prefixes):
            return text
        scheme, _, rest = lowered.partition("://")
        host = rest.split("/", 1)[0]
        if scheme == "https" and host in HUB_HOSTS:
            return text
        raise refuse("a link to a host that is not a hub")
    parts = text.split("/")
    if len(parts) == 3:
        if parts[0].lower() not in HUB_HOSTS:
            raise refuse(f"{parts[0]!r} is not a hub")
        parts = parts[1:]
    if len(parts) > 2:
        raise refuse("too many parts")
    last, _, tag = parts[-1].partition(":")
    names = parts[:-1] + [last]
    if not all(_PART.match(p) for p in names) or (tag and not _TAG.match(tag)):
        raise refuse("names are letters, digits, '.', '_' and '-'")
    return text


# --- local paths ------------------------------------------------------------------------------------


def check_local_path(value: Any, roots: Sequence[Path], field: str = "path") -> Path:
    """``value`` as a resolved path when it lies under one of ``roots``; :class:`Forbidden` otherwise.

    The path must be absolute and hold no ``..``; symbolic links are followed before the check.
    """
    if not isinstance(value, str) or not value:
        raise InvalidRequest(f"field {field!r} must be a non-empty string")
    if "\0" in value:
        raise InvalidRequest(f"field {field!r} holds a NUL character")
    raw = Path(value)
    if not raw.is_absolute():
        raise Forbidden(f"field {field!r}: {value[:120]!r} is not an absolute path")
    if ".." in raw.parts:
        raise Forbidden(f"field {field!r}: {value[:120]!r} climbs out with '..'")
    real = Path(os.path.realpath(raw))
    for root in roots:
        base = Path(os.path.realpath(root))
        if real == base or base in real.parents:
            return real
    shown = ", ".join(str(r) for r in roots) or "none"
    raise Forbidden(f"field {field!r}: {value[:120]!r} is outside the allowed folders ({shown}); "
                    f"start the server with --allow-path DIR to allow another")


#: Routes whose body names something to download: these fields must be hub references.
PULL_ROUTES: dict[str, tuple[str, ...]] = {
    "/api/pull": ("model", "name"),
    "/corral/pull": ("model", "name", "repo", "ref", "url"),
    "/corral/pulls": ("model", "name", "repo", "ref", "url"),
}

#: Fields of a management body that name local files or folders: they must lie under the allowed roots.
PATH_FIELDS = ("path", "paths", "dest", "dir", "directory", "folder")

_MODELFILE_REF = re.compile(r"^\s*(FROM|ADAPTER)\s+(\S+)", re.IGNORECASE | re.MULTILINE)


def _looks_like_path(value: str) -> bool:
    return value.startswith(("/", "~", ".", "\\")) or "\\" in value or (len(value) > 1 and value[1] == ":")


def check_management_body(path: str, body: Any, roots: Sequence[Path], link_prefixes: Iterable[str] = ()) -> None:
    """Refuse a management body that names a non-hub download or a path outside ``roots``."""
    if not isinstance(body, dict):
        return
    pull = next((fields for prefix, fields in PULL_ROUTES.items()
                 if path == prefix or path.startswith(prefix + "/")), None)
    if pull is not None:
        for name in pull:
            if body.get(name) is not None:
                check_hub_ref(body[name], name, link_prefixes)
    for name in PATH_FIELDS:
        value = body.get(name)
        if value is None:
            continue
        for item in value if isinstance(value, list) else [value]:
            check_local_path(item, roots, name)
    if path == "/api/create" or path.startswith("/api/create/"):
        refs = [("from", body.get("from"))]
        modelfile = body.get("modelfile")
        if isinstance(modelfile, str):
            refs += [(m.group(1).lower(), m.group(2)) for m in _MODELFILE_REF.finditer(modelfile)]
        for name, value in refs:
            if isinstance(value, str) and value:
                if _looks_like_path(value):
                    check_local_path(os.path.expanduser(value) if value.startswith("~") else value, roots, name)
                elif "://" in value or value.count("/") >= 2:
                    check_hub_ref(value, name, link_prefixes)


# --- addresses --------------------------------------------------------------------------------------


def is_loopback(host: str) -> bool:
    """Whether listening on ``host`` keeps the server to this machine."""
    name = host.strip("[]").lower()
    if name in ("localhost", "localhost.") or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        pass
    import socket

    try:
        infos = socket.getaddrinfo(name, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0].split("%")[0]).is_loopback for i in infos)


# --- slow clients -----------------------------------------------------------------------------------

_TIMEOUT_RESPONSE = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain\r\ncontent-length: 29\r\n"
                     b"connection: close\r\n\r\nthe request headers came late")


def guarded_protocol(header_timeout: float) -> type:
    """uvicorn's HTTP protocol class, dropping a connection whose request headers take longer than
    ``header_timeout`` seconds from their first byte (answered 408, then closed).

    A keep-alive connection idle between requests is uvicorn's own ``timeout_keep_alive`` to close.
    """
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    class GuardedProtocol(AutoHTTPProtocol):  # type: ignore[misc, valid-type]
        _header_timer: Any = None
        _served_cycle: Any = None

        def _waiting_for_headers(self) -> bool:
            cycle = self.cycle
            return cycle is None or cycle is self._served_cycle or cycle.response_complete

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm()

        def _arm(self) -> None:
            if self._header_timer is None:
                self._header_timer = self.loop.call_later(header_timeout, self._headers_late)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def data_received(self, data: bytes) -> None:
            waiting = self._waiting_for_headers()
            if waiting:
                self._served_cycle = self.cycle
                self._arm()  # the next request's first byte starts its deadline
            super().data_received(data)
            if waiting and self.cycle is not self._served_cycle:
                self._disarm()  # its headers are in

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _headers_late(self) -> None:
            self._header_timer = None
            if self.transport.is_closing() or not self._waiting_for_headers():
                return
            if self.cycle is not None and not self.cycle.response_complete:
                return
            try:
                self.transport.write(_TIMEOUT_RESPONSE)
            finally:
                self.transport.close()

    return GuardedProtocol
