"""Which routes manage and which run models, and which take bodies other than JSON: two tables of path
prefixes that every route goes through (the guard middleware reads them, whoever added the route).

A prefix covers the path itself and everything below it (``/api/pull`` covers ``/api/pull`` and
``/api/pull/x``, not ``/api/puller``; a prefix ending in ``/`` covers what starts with it). The longest
matching prefix decides. Routes added by plugins (``register_routes``) or by new protocol surfaces declare
theirs with :func:`set_route_scope` and :func:`accept_bodies`; anything not listed runs models
(``inference``) and takes JSON bodies only.
"""

from __future__ import annotations

import functools

#: May change the server or the library: needs a key of scope ``full`` when keys are on.
MANAGEMENT = "management"
#: Runs models or reads status: any accepted key.
INFERENCE = "inference"
#: Answered without a key (a plugin's static web page, say); Host and Origin rules still apply.
PUBLIC = "public"

SCOPE_NAMES = (MANAGEMENT, INFERENCE, PUBLIC)

#: Path prefix -> scope. The longest matching prefix wins; ``/`` is the default.
ROUTE_SCOPES: dict[str, str] = {
    "/": INFERENCE,
    # Ollama's management routes
    "/api/pull": MANAGEMENT,
    "/api/push": MANAGEMENT,
    "/api/delete": MANAGEMENT,
    "/api/copy": MANAGEMENT,
    "/api/create": MANAGEMENT,
    "/api/blobs": MANAGEMENT,
    "/corral/": MANAGEMENT,
    # pull jobs start downloads and hub listings reach out to the hubs: management too
    "/corral/pulls": MANAGEMENT,
    "/corral/hub": MANAGEMENT,
    # read-only status under /corral/
    "/corral/status": INFERENCE,
    "/corral/ps": INFERENCE,
    "/corral/health": INFERENCE,
}

#: Exact path -> scope, looked up before the prefixes: a page a plugin serves at ``/`` (a prefix ``/``
#: would cover every route of the server).
EXACT_SCOPES: dict[str, str] = {}

#: Path prefix -> (content types accepted, largest body in bytes or None for the server's limit, 0 for no
#: limit). Prefixes not listed take ``application/json`` only. ``*`` accepts any content type.
BODY_TYPES: dict[str, tuple[tuple[str, ...], int | None]] = {
    "/api/blobs/": (("*",), 0),  # Ollama's blob upload: raw model files, any size
    "/v1/audio/transcriptions": (("multipart/form-data",), None),
    "/v1/audio/translations": (("multipart/form-data",), None),
    "/v1/files": (("multipart/form-data",), None),
}


def set_route_scope(prefix: str, scope: str, *, exact: bool = False) -> None:
    """Declare the scope of the routes under ``prefix`` (``management``, ``inference`` or ``public``);
    ``exact``: of the path ``prefix`` only, not what lies below it."""
    if scope not in SCOPE_NAMES:
        raise ValueError(f"scope {scope!r} is not one of {', '.join(SCOPE_NAMES)}")
    if not prefix.startswith("/"):
        raise ValueError(f"route prefix {prefix!r} must start with '/'")
    (EXACT_SCOPES if exact else ROUTE_SCOPES)[prefix] = scope
    _lookup.cache_clear()


def accept_bodies(prefix: str, *content_types: str, max_size: int | None = None) -> None:
    """Let the routes under ``prefix`` take bodies of ``content_types`` (``*``: any) instead of JSON.

    ``max_size``: the largest body in bytes (None: the server's ``--max-body``; 0: no limit).
    """
    if not content_types:
        raise ValueError("name at least one content type")
    BODY_TYPES[prefix] = (tuple(t.lower() for t in content_types), max_size)
    _lookup.cache_clear()


def _candidates(path: str):
    """``path`` and each of its parents, longest first: ``/a/b``, ``/a/``, ``/a``, ``/``."""
    yield path
    end = len(path)
    while True:
        cut = path.rfind("/", 0, end)
        if cut < 0:
            return
        if cut + 1 < len(path):
            yield path[: cut + 1]
        if cut > 0:
            yield path[:cut]
        end = cut


@functools.lru_cache(maxsize=2048)
def _lookup(path: str) -> tuple[str, tuple[tuple[str, ...], int | None] | None]:
    scope = EXACT_SCOPES.get(path)
    if scope is None:
        scope = INFERENCE
        for candidate in _candidates(path):
            if candidate in ROUTE_SCOPES:
                scope = ROUTE_SCOPES[candidate]
                break
    body = None
    for candidate in _candidates(path):
        if candidate in BODY_TYPES:
            body = BODY_TYPES[candidate]
            break
    return scope, body


def route_scope(path: str) -> str:
    """The scope of the route at ``path``."""
    return _lookup(path)[0]


def body_types(path: str) -> tuple[tuple[str, ...], int | None] | None:
    """(content types, size limit) for a route that takes more than JSON, or None for a JSON route."""
    return _lookup(path)[1]
