"""The guard middleware: every request to the server passes through it, whichever route answers it.

In order, for each HTTP request (and the Host, Origin and key checks for WebSockets too):

1. **Host**: a ``Host`` that is not one of the server's own names (loopback names and addresses, the
   bound address — for a wildcard bind this machine's addresses and host name — and ``--allow-host`` /
   ``CORRAL_ALLOWED_HOSTS``) is a 403. This stops DNS rebinding: a page on ``evil.example`` whose name now
   points at 127.0.0.1 still sends ``Host: evil.example``.
2. **Origin**: a browser ``Origin`` that is not the server's own, a local one, or one listed with
   ``--allow-origin`` / ``CORRAL_ORIGINS`` (wildcards as ``OLLAMA_ORIGINS``) is a 403 on every route. CORS
   preflights are answered for allowed origins only. Clients that are not browsers send no Origin.
3. **Key**: when keys are on, ``Authorization: Bearer KEY`` (or ``x-api-key: KEY``) must be an accepted
   key (401), and a key of scope ``inference`` may not use management routes (403); the route table is
   :mod:`corral.server.scopes`.
4. **Body**: over ``--max-body`` is a 413; on a JSON route, a body that is not ``application/json`` is a
   415; one nested deeper than the limit is a 400; a body that takes too long to arrive is a 408.
   Management bodies naming a non-hub download or a path outside the allowed roots are a 403
   (:func:`corral.server.limits.check_management_body`).
5. **Record**: each request gets an id (``X-Request-Id``), its figures go to ``/metrics`` and a line to the
   request log.

Plain ASGI (no Starlette import here), so its cost per request stays in microseconds.
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import json
import logging
import re
import socket
import time
import uuid
from pathlib import Path
from typing import Any, Iterable, Sequence

import attrs

from corral.errors import CorralError, Forbidden
from corral.keys import FULL, KeyRing
from corral.server import scopes
from corral.server.auth import presented_key
from corral.server.limits import Limits, check_management_body, is_loopback, json_depth_exceeds
from corral.server.request_log import RequestLog, RequestRecord, UsageScan, prompt_fields

log = logging.getLogger("corral.server")

#: Origins browsers on this machine use (as Ollama allows them by default), besides the server's own.
LOCAL_ORIGINS = tuple(
    f"{scheme}://{host}{port}"
    for host in ("localhost", "127.0.0.1", "[::1]", "0.0.0.0")
    for scheme in ("http", "https")
    for port in ("", ":*")
) + ("app://*", "file://*", "tauri://*", "vscode-webview://*", "vscode-file://*")

#: Bodies up to this size are parsed once here (model name for metrics, prompt for the log, body rules).
PARSE_LIMIT = 1024 * 1024

_JSON_TYPES = (b"application/json",)
_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:\-]{1,128}$")
_HEADER_LIST = re.compile(rb"^[A-Za-z0-9_\-, ]{0,1024}$")
_MODEL = re.compile(rb'"model"\s*:\s*"([^"\\]{1,256})"')
_LONG_MODEL = re.compile(rb'"model"\s*:\s*"[^"]{1025}')
#: Longest model reference a body may carry (names and ids are far shorter; longer ones only cost lookups).
MAX_MODEL_REF = 1024


def split_list(value: str | None) -> tuple[str, ...]:
    """A comma-separated environment value as a tuple (``CORRAL_ORIGINS``, ``CORRAL_ALLOWED_HOSTS``)."""
    return tuple(v.strip() for v in (value or "").split(",") if v.strip())


def wildcard_match(pattern: str, value: str) -> bool:
    """``*`` alone matches anything; one ``*`` inside matches any run of characters (as gin's CORS)."""
    if pattern == "*":
        return True
    if "*" not in pattern:
        return pattern == value
    head, _, tail = pattern.partition("*")
    return len(value) >= len(head) + len(tail) and value.startswith(head) and value.endswith(tail)


@attrs.frozen
class GuardOptions:
    """How the guards are set for one server."""

    #: The address the server is bound to.
    bound_host: str = "127.0.0.1"
    #: Extra ``Host`` names (patterns with ``*``) besides the server's own.
    allowed_hosts: tuple[str, ...] = ()
    #: Extra browser origins (patterns with ``*``) besides the server's own and the local ones.
    allowed_origins: tuple[str, ...] = ()
    #: The accepted keys; None or empty: no key needed.
    keys: KeyRing | None = None
    limits: Limits = Limits()
    #: Folders whose paths management bodies (import, pull destinations) may name.
    allowed_paths: tuple[Path, ...] = ()
    #: Folder of the request log (None: no log).
    log_dir: Path | None = None
    #: Log the prompt fields of request bodies too.
    log_prompts: bool = False


def check_exposure(host: str, keys: KeyRing | None, insecure_no_auth: bool = False) -> None:
    """Refuse to listen beyond loopback without a key, unless ``insecure_no_auth``."""
    if insecure_no_auth or is_loopback(host) or (keys is not None and keys.enabled):
        return
    raise Forbidden(
        f"refusing to serve on {host} without an API key: anyone who can reach it could run and manage "
        f"models. Set --api-key (or CORRAL_API_KEY), add one with `corral keys add NAME`, listen on 127.0.0.1, "
        f"or pass --insecure-no-auth"
    )


def _local_addresses() -> set:
    import psutil

    found = set()
    try:
        for addresses in psutil.net_if_addrs().values():
            for address in addresses:
                if address.family in (socket.AF_INET, socket.AF_INET6):
                    try:
                        found.add(ipaddress.ip_address(address.address.split("%")[0]))
                    except ValueError:
                        pass
    except OSError:
        pass
    return found


def _host_name(header: str) -> str:
    """``Host`` without its port, lower case, brackets and trailing dot removed."""
    if header.startswith("["):
        name = header[1:].split("]", 1)[0]
    elif header.count(":") == 1:
        name = header.split(":", 1)[0]
    else:
        name = header
    return name.lower().rstrip(".")


class HostPolicy:
    """Which ``Host`` headers and browser origins the server answers."""

    CACHE = 512

    def __init__(self, bound_host: str, allowed_hosts: Iterable[str] = (), allowed_origins: Iterable[str] = ()) -> None:
        bound = bound_host.strip("[]").lower()
        self.names = {"localhost"}
        self.addresses: set = set()
        self.host_patterns = tuple(p.strip().lower().rstrip(".") for p in allowed_hosts if p.strip())
        self.origin_patterns = LOCAL_ORIGINS + tuple(o.strip().rstrip("/").lower() for o in allowed_origins if o.strip())
        try:
            address = ipaddress.ip_address(bound)
        except ValueError:
            self.names.add(bound.rstrip("."))
        else:
            if address.is_unspecified:  # every address of this machine, and its names
                self.addresses |= _local_addresses()
                for name in {socket.gethostname(), socket.getfqdn()}:
                    if name:
                        self.names.add(name.lower().rstrip("."))
            else:
                self.addresses.add(address)
        self._hosts: dict[bytes, bool] = {}
        self._origins: dict[tuple[bytes, bytes], bool] = {}

    def host_allowed(self, header: bytes) -> bool:
        known = self._hosts.get(header)
        if known is None:
            known = self._host(header.decode("latin-1"))
            if len(self._hosts) >= self.CACHE:
                self._hosts.clear()
            self._hosts[header] = known
        return known

    def _host(self, header: str) -> bool:
        name = _host_name(header.strip())
        if not name:
            return False
        if name in self.names or name.endswith(".localhost"):
            return True
        try:
            address = ipaddress.ip_address(name)
        except ValueError:
            pass
        else:
            if address.is_loopback or address in self.addresses:
                return True
        return any(wildcard_match(p, name) for p in self.host_patterns)

    def origin_allowed(self, origin: bytes, host: bytes | None) -> bool:
        key = (origin, host or b"")
        known = self._origins.get(key)
        if known is None:
            known = self._origin(origin.decode("latin-1").strip().lower(), (host or b"").decode("latin-1").lower())
            if len(self._origins) >= self.CACHE:
                self._origins.clear()
            self._origins[key] = known
        return known

    def _origin(self, origin: str, host: str) -> bool:
        if origin in (f"http://{host}", f"https://{host}") and host:
            return True  # the server's own page (its Host passed the check already)
        return any(wildcard_match(p, origin) for p in self.origin_patterns)


def _is_json(content_type: bytes | None) -> bool:
    if not content_type:
        return False
    media = content_type.split(b";", 1)[0].strip().lower()
    return media in _JSON_TYPES or (media.startswith(b"application/") and media.endswith(b"+json"))


def _media_allowed(content_type: bytes | None, accepted: Sequence[str]) -> bool:
    if "*" in accepted:
        return True
    media = (content_type or b"").split(b";", 1)[0].strip().lower().decode("latin-1")
    return media in accepted


class _Denied(Exception):
    def __init__(self, status: int, code: str, message: str, headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, tuple(headers)


def _error_type(status: int) -> str:
    return "authentication_error" if status == 401 else "invalid_request_error" if status < 500 else "server_error"


class GuardMiddleware:
    """ASGI middleware around the whole app: the checks above, then the figures and the log line."""

    def __init__(self, app: Any, options: GuardOptions, runtime: Any = None, metrics: Any = None) -> None:
        self.app = app
        self.options = options
        self.runtime = runtime
        self.metrics = metrics
        self.keys = options.keys
        self.limits = options.limits
        self.policy = HostPolicy(options.bound_host, options.allowed_hosts, options.allowed_origins)
        self.request_log = RequestLog(options.log_dir) if options.log_dir is not None else None
        self._routes: dict[tuple[str, str], str] = {}

    # --- entry -------------------------------------------------------------------------------------

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "websocket":
            await self._websocket(scope, receive, send)
        elif kind == "lifespan":
            await self.app(scope, receive, self._lifespan_send(send))
        else:
            await self.app(scope, receive, send)

    def _lifespan_send(self, send: Any) -> Any:
        async def wrapped(message: dict) -> None:
            if message["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed") and self.request_log:
                self.request_log.close()
            await send(message)

        return wrapped

    def _headers(self, scope: dict) -> dict[bytes, bytes]:
        wanted = {}
        for name, value in scope["headers"]:
            if name in _WANTED:
                wanted[name] = value
        return wanted

    def _check_caller(self, scope: dict, headers: dict[bytes, bytes], record: RequestRecord,
                      extra: list | None = None) -> None:
        """Host, Origin, key and scope; raises :class:`_Denied`. CORS headers for an allowed origin go to
        ``extra`` (so a browser page can read a 401 too)."""
        host = headers.get(b"host")
        if host is not None and not self.policy.host_allowed(host):
            raise _Denied(403, "forbidden_host", f"Host {host.decode('latin-1')[:100]!r} is not one of this "
                          f"server's names; start it with --allow-host NAME to answer it")
        origin = headers.get(b"origin")
        if origin is not None and not self.policy.origin_allowed(origin, host):
            raise _Denied(403, "forbidden_origin", f"Origin {origin.decode('latin-1')[:100]!r} may not use this "
                          f"server; start it with --allow-origin ORIGIN (or CORRAL_ORIGINS) to allow it")
        if origin is not None and extra is not None:
            extra += [(b"access-control-allow-origin", origin), (b"vary", b"Origin"),
                      (b"access-control-expose-headers", b"X-Request-Id, Retry-After")]
        path = scope["path"]
        record.scope = route_scope = scopes.route_scope(path)
        keys = self.keys
        if keys is None or route_scope == scopes.PUBLIC or not keys.enabled:
            return
        if scope["type"] == "http" and scope["method"] == "OPTIONS" and origin is not None \
                and b"access-control-request-method" in headers:
            return  # a preflight carries no credentials; it was answered for an allowed origin only
        secret, tried = presented_key(headers)
        key = keys.check(secret) if secret else None
        if key is None:
            message = "wrong API key" if tried else \
                "missing API key: send Authorization: Bearer KEY (or x-api-key: KEY)"
            raise _Denied(401, "unauthorized", message, [(b"www-authenticate", b"Bearer")])
        record.key = key.name
        if route_scope == scopes.MANAGEMENT and key.scope != FULL:
            raise _Denied(403, "forbidden", f"the key {key.name!r} may only run models ({key.scope} scope); "
                          f"{path} manages the server and needs a key of scope full")

    # --- HTTP --------------------------------------------------------------------------------------

    async def _http(self, scope: dict, receive: Any, send: Any) -> None:
        headers = self._headers(scope)
        given_id = headers.get(b"x-request-id")
        request_id = given_id.decode() if given_id and _REQUEST_ID.match(given_id) else _next_id()
        record = RequestRecord(request_id, scope["method"], scope["path"], scope.get("client"))
        origin = headers.get(b"origin")
        extra = [(b"x-request-id", request_id.encode())]
        scan: list[UsageScan | None] = [None]
        try:
            try:
                self._check_caller(scope, headers, record, extra)
                if scope["method"] == "OPTIONS" and origin is not None and b"access-control-request-method" in headers:
                    await self._preflight(send, headers, extra, record)
                    return
                receive = await self._body(scope, receive, headers, record)
            except _Denied as denied:
                record.denied = denied.code
                await self._deny(send, denied, extra, record)
                return

            async def guarded_send(message: dict) -> None:
                kind = message["type"]
                if kind == "http.response.start":
                    record.status = message["status"]
                    out = list(message.get("headers") or ())
                    content_type = b""
                    for name, value in out:
                        if name.lower() == b"content-type":
                            content_type = value.lower()
                    out += extra
                    message = {**message, "headers": out}
                    if record.status == 200 and record.scope != scopes.MANAGEMENT:
                        if content_type.startswith(b"text/event-stream"):
                            record.stream, scan[0] = True, UsageScan("sse")
                        elif content_type.startswith(b"application/x-ndjson"):
                            record.stream, scan[0] = True, UsageScan("ndjson")
                        elif content_type.startswith(b"application/json"):
                            scan[0] = UsageScan("json")
                elif kind == "http.response.body":
                    chunk = message.get("body") or b""
                    if chunk:
                        if record.first_byte is None:
                            record.first_byte = time.perf_counter()
                        record.bytes_out += len(chunk)
                        if scan[0] is not None:
                            scan[0].feed(chunk)
                await send(message)

            await self.app(scope, receive, guarded_send)
        except BaseException:
            if record.status is None:
                record.status = 500
            raise
        finally:
            record.ended = time.perf_counter()
            if scan[0] is not None:
                record.prompt_tokens, record.completion_tokens = scan[0].finish()
            self._finish(scope, record)

    async def _preflight(self, send: Any, headers: dict, extra: list, record: RequestRecord) -> None:
        asked = headers.get(b"access-control-request-headers", b"")
        allow_headers = asked if asked and _HEADER_LIST.match(asked) else \
            b"Authorization, Content-Type, X-Api-Key, X-Request-Id"
        out = extra + [
            (b"access-control-allow-methods", b"GET, POST, PUT, PATCH, DELETE, OPTIONS"),
            (b"access-control-allow-headers", allow_headers),
            (b"access-control-max-age", b"600"),
            (b"content-length", b"0"),
        ]
        if headers.get(b"access-control-request-private-network", b"").lower() == b"true":
            out.append((b"access-control-allow-private-network", b"true"))
        record.status = 204
        await send({"type": "http.response.start", "status": 204, "headers": out})
        await send({"type": "http.response.body", "body": b""})

    async def _deny(self, send: Any, denied: _Denied, extra: list, record: RequestRecord) -> None:
        error = {"error": {"message": denied.message, "type": _error_type(denied.status), "code": denied.code,
                           "param": None}}
        if record.path.startswith("/v1/messages"):  # Anthropic's clients read their own error shape
            from corral.server.anthropic_routes import error_body

            error = error_body(denied.message, denied.status)
        body = json.dumps(error).encode()
        record.status = denied.status
        record.bytes_out = len(body)
        out = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               *denied.headers, *extra]
        if denied.status in (408, 413):
            out.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": denied.status, "headers": out})
        await send({"type": "http.response.body", "body": body})

    # --- bodies ------------------------------------------------------------------------------------

    async def _body(self, scope: dict, receive: Any, headers: dict, record: RequestRecord) -> Any:
        """Check the request body; returns the ``receive`` the app gets (the body read here, replayed)."""
        length = headers.get(b"content-length")
        chunked = b"transfer-encoding" in headers
        if (length is None or length == b"0") and not chunked:
            return receive
        size = None
        if length is not None:
            if not length.isdigit():
                raise _Denied(400, "invalid_request", "Content-Length is not a number")
            size = int(length)
        path = scope["path"]
        special = scopes.body_types(path)
        content_type = headers.get(b"content-type")
        if special is None:
            limit = self.limits.max_body
            if size is not None and size > limit:
                raise _Denied(413, "payload_too_large", f"the request body of {size} bytes is over the "
                              f"{limit} byte limit (--max-body)")
            if not _is_json(content_type):
                shown = content_type.decode("latin-1")[:80] if content_type else "none"
                raise _Denied(415, "unsupported_media_type", f"{path} takes JSON bodies: send Content-Type: "
                              f"application/json (got {shown})")
            body = await self._read(receive, limit, record)
            self._check_json(path, body, record)
            return _replay(body, receive)
        accepted, own_limit = special
        if not _media_allowed(content_type, accepted):
            shown = content_type.decode("latin-1")[:80] if content_type else "none"
            raise _Denied(415, "unsupported_media_type",
                          f"{path} takes {', '.join(accepted)} bodies (got {shown})")
        limit = self.limits.max_body if own_limit is None else own_limit
        if limit and size is not None and size > limit:
            raise _Denied(413, "payload_too_large", f"the request body of {size} bytes is over the {limit} byte limit")
        return self._counting(receive, limit, record)

    async def _read(self, receive: Any, limit: int, record: RequestRecord) -> bytes:
        chunks, size = [], 0
        try:
            async with _deadline(self.limits.body_timeout):
                while True:
                    message = await receive()
                    if message["type"] != "http.request":
                        raise _Denied(400, "invalid_request", "the client went away before sending its body")
                    chunk = message.get("body") or b""
                    size += len(chunk)
                    if size > limit:
                        raise _Denied(413, "payload_too_large", f"the request body is over the {limit} byte "
                                      f"limit (--max-body)")
                    chunks.append(chunk)
                    if not message.get("more_body"):
                        break
        except TimeoutError:
            raise _Denied(408, "request_timeout", f"the request body did not arrive within "
                          f"{self.limits.body_timeout:g} s") from None
        record.bytes_in = size
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _check_json(self, path: str, body: bytes, record: RequestRecord) -> None:
        if json_depth_exceeds(body, self.limits.max_depth):
            raise _Denied(400, "invalid_request", f"the JSON body nests deeper than {self.limits.max_depth} levels")
        management = record.scope == scopes.MANAGEMENT
        parsed = None
        if len(body) <= PARSE_LIMIT or management:
            try:
                parsed = json.loads(body)
            except (ValueError, RecursionError):
                return  # the route answers a body that is not JSON
            if isinstance(parsed, dict):
                model = parsed.get("model")
                if isinstance(model, str) and len(model) > MAX_MODEL_REF:
                    raise _Denied(400, "invalid_request", f"field 'model' is {len(model)} characters long; "
                                  f"model names are at most {MAX_MODEL_REF}")
                record.model_ref = model if isinstance(model, str) else None
                if self.options.log_prompts:
                    record.prompt = prompt_fields(parsed)
        else:
            if _LONG_MODEL.search(body):
                raise _Denied(400, "invalid_request", f"field 'model' is over {MAX_MODEL_REF} characters long")
            found = _MODEL.search(body)
            record.model_ref = found.group(1).decode("utf-8", "replace") if found else None
        if management:
            try:
                check_management_body(path, parsed, self.options.allowed_paths, self._link_prefixes())
            except CorralError as exc:
                raise _Denied(exc.http_status, "forbidden" if isinstance(exc, Forbidden) else "invalid_request",
                              str(exc)) from None

    def _link_prefixes(self) -> list[str]:
        host = getattr(self.runtime, "host", None)
        prefixes: list[str] = []
        for source in getattr(host, "sources", ()) or ():
            try:
                prefixes.extend(source.link_prefixes())
            except Exception:  # a broken source plugin names no links
                pass
        return prefixes

    def _counting(self, receive: Any, limit: int, record: RequestRecord) -> Any:
        """Pass a non-JSON body through as it arrives, within its limit and the body timeout (each part)."""
        state = {"done": False}

        async def counted() -> dict:
            if state["done"]:
                return await receive()
            try:
                async with _deadline(self.limits.body_timeout):
                    message = await receive()
            except TimeoutError:
                state["done"] = True
                return {"type": "http.disconnect"}  # too slow: the app sees the client gone
            if message["type"] == "http.request":
                record.bytes_in += len(message.get("body") or b"")
                if limit and record.bytes_in > limit:
                    state["done"] = True
                    return {"type": "http.disconnect"}
                if not message.get("more_body"):
                    state["done"] = True
            return message

        return counted

    # --- after the answer --------------------------------------------------------------------------

    def _route(self, scope: dict) -> str:
        route = scope.get("route")
        template = getattr(route, "path", None)
        if template is not None:
            return template
        key = (scope["method"], scope["path"])
        known = self._routes.get(key)
        if known is None:
            known = "unmatched"
            app = scope.get("app")
            for candidate in getattr(getattr(app, "router", None), "routes", ()):
                try:
                    match, _ = candidate.matches(scope)
                except Exception:  # a route that cannot match this scope
                    continue
                if match.value:  # partial (wrong method) or full
                    known = getattr(candidate, "path", "unmatched")
                    if match.value == 2:
                        break
            if len(self._routes) >= 1024:
                self._routes.clear()
            self._routes[key] = known
        return known

    def _finish(self, scope: dict, record: RequestRecord) -> None:
        try:
            record.route = self._route(scope)
            ref = record.model_ref
            if ref and self.runtime is not None:
                entry = self.runtime.find(ref)
                record.model = entry.model.name if entry is not None else None
            if self.metrics is not None:
                self.metrics.observe(record)
            if self.request_log is not None:
                self.request_log.write(record.line())
        except Exception:  # the figures must never break an answer
            log.exception("recording %s %s failed", record.method, record.path)

    # --- WebSocket ---------------------------------------------------------------------------------

    async def _websocket(self, scope: dict, receive: Any, send: Any) -> None:
        headers = self._headers(scope)
        record = RequestRecord(_next_id(), "WEBSOCKET", scope["path"], scope.get("client"))
        try:
            self._check_caller(scope, headers, record)
        except _Denied as denied:
            log.info("refused a WebSocket to %s: %s", scope["path"], denied.message)
            await send({"type": "websocket.close", "code": 1008, "reason": denied.code})
            return
        await self.app(scope, receive, send)


_WANTED = frozenset({b"host", b"origin", b"authorization", b"x-api-key", b"content-type", b"content-length",
                     b"transfer-encoding", b"x-request-id", b"access-control-request-method",
                     b"access-control-request-headers", b"access-control-request-private-network"})


_ID_PREFIX = uuid.uuid4().hex[:16]
_ID_COUNTER = itertools.count(1)


def _next_id() -> str:
    """A request id unique to this server run: 16 random hex digits, then a counter (32 characters)."""
    return f"{_ID_PREFIX}{next(_ID_COUNTER):016x}"


def _deadline(seconds: float) -> Any:
    """A timeout block for the event loop (asyncio's own where it has one: far cheaper than anyio's)."""
    timeout = getattr(asyncio, "timeout", None)
    if timeout is not None:
        return timeout(seconds)
    import anyio

    return anyio.fail_after(seconds)


def _replay(body: bytes, receive: Any) -> Any:
    sent = [False]

    async def replayed() -> dict:
        if not sent[0]:
            sent[0] = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # later calls: the client disconnecting

    return replayed


def guard_stack(runtime: Any, watchdog: Any = None, *, api_key: str | None = None,
                options: GuardOptions | None = None) -> tuple[list, list, Any]:
    """What :func:`corral.server.app.create_app` adds: the guard middleware (outermost, around every route
    of the app, those plugins add included), the ``/metrics`` route, and the :class:`Metrics` both share.

    Without ``options``: loopback rules and ``api_key`` as the only (full) key.
    """
    from starlette.middleware import Middleware

    from corral.server import metrics

    if options is None:
        options = GuardOptions(keys=KeyRing.single(api_key))
    elif options.keys is None and api_key:
        options = attrs.evolve(options, keys=KeyRing.single(api_key))
    figures = metrics.Metrics(runtime, watchdog)
    middleware = [Middleware(GuardMiddleware, options=options, runtime=runtime, metrics=figures)]
    return middleware, metrics.routes(), figures
