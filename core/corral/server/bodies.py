"""Reading and checking JSON request bodies: a missing or mistyped field is one clear 400 error."""

from __future__ import annotations

import json
from typing import Any

from corral.errors import InvalidRequest

#: Largest request body accepted (base64 images for image-to-image fit well inside).
MAX_BODY = 64 * 1024 * 1024

_MISSING = object()


async def read_json(request: Any) -> dict:
    """The request's JSON object body."""
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > MAX_BODY:
        raise InvalidRequest(f"request body of {int(length)} bytes is over the {MAX_BODY} byte limit")
    raw = await request.body()
    if not raw.strip():
        raise InvalidRequest("the request needs a JSON body")
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise InvalidRequest(f"the request body is not valid JSON ({exc})") from None
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    return body


_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false", list: "a list",
               dict: "an object"}


def field(body: dict, name: str, kind: type | tuple[type, ...], default: Any = _MISSING) -> Any:
    """``body[name]`` checked against ``kind``; absent (or null) gives ``default``, or a 400 without one."""
    value = body.get(name)
    if value is None:
        if default is _MISSING:
            raise InvalidRequest(f"the request needs the field {name!r}")
        return default
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if float in kinds and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if isinstance(value, bool) and bool not in kinds:
        ok = False
    else:
        ok = isinstance(value, kinds)
    if not ok:
        wanted = " or ".join(_TYPE_NAMES.get(k, k.__name__) for k in kinds)
        raise InvalidRequest(f"field {name!r} must be {wanted}, got {json.dumps(value)[:60]}")
    return value


def text_list(body: dict, name: str) -> list[str]:
    """A field holding one string or a non-empty list of strings."""
    value = field(body, name, (str, list))
    items = [value] if isinstance(value, str) else value
    if not items:
        raise InvalidRequest(f"field {name!r} must not be empty")
    if not all(isinstance(v, str) for v in items):
        raise InvalidRequest(f"field {name!r} must be a string or a list of strings (token arrays are not supported)")
    return items


#: OpenAI sampling fields passed to drivers (which ignore what their backend does not have).
SAMPLING: dict[str, type] = {
    "temperature": float,
    "top_p": float,
    "top_k": int,
    "min_p": float,
    "repeat_penalty": float,
    "presence_penalty": float,
    "frequency_penalty": float,
    "seed": int,
    "max_tokens": int,
}


def sampling(body: dict) -> dict[str, Any]:
    """The generation parameters present in an OpenAI chat or completion request."""
    params = {name: field(body, name, kind, None) for name, kind in SAMPLING.items()}
    if params["max_tokens"] is None:
        params["max_tokens"] = field(body, "max_completion_tokens", int, None)
    stop = field(body, "stop", (str, list), None)
    if stop is not None:
        params["stop"] = [stop] if isinstance(stop, str) else [str(s) for s in stop]
    if field(body, "n", int, 1) != 1:
        raise InvalidRequest("only n=1 is supported; send one request per answer")
    return {k: v for k, v in params.items() if v is not None}
