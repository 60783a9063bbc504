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


#: OpenAI sampling fields passed to drivers; a driver that lacks one of them refuses it (400) through its
#: ``request_fields``.
SAMPLING: dict[str, type] = {
    "temperature": float,
    "top_p": float,
    "top_k": int,
    "min_p": float,
    "typical_p": float,
    "repeat_penalty": float,
    "presence_penalty": float,
    "frequency_penalty": float,
    "seed": int,
    "max_tokens": int,
}
#: The most stop strings a request may give (OpenAI's limit).
MAX_STOPS = 4
#: The most choices one request may ask for with ``n``.
MAX_CHOICES = 8

#: Every field each generation route accepts; any other is a 400 naming it.
CHAT_FIELDS = frozenset({
    "model", "messages", "stream", "stream_options", "max_tokens", "max_completion_tokens", "stop", "n",
    "tools", "tool_choice", "parallel_tool_calls", "response_format", "logprobs", "top_logprobs",
    "reasoning_effort", "logit_bias", "user", *SAMPLING,
})  # fmt: skip
COMPLETION_FIELDS = frozenset({
    "model", "prompt", "stream", "stream_options", "max_tokens", "stop", "n", "echo", "logprobs",
    "response_format", "logit_bias", "user", *SAMPLING,
})  # fmt: skip


def check_fields(body: dict, allowed: frozenset[str], route: str) -> None:
    """Refuse a field the route does not support, naming it, rather than ignoring it."""
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise InvalidRequest(f"field {unknown[0]!r} is not supported by {route} "
                             "(see docs/http.md for the fields it accepts)")


def sampling(body: dict) -> dict[str, Any]:
    """The generation parameters present in an OpenAI chat or completion request."""
    params = {name: field(body, name, kind, None) for name, kind in SAMPLING.items()}
    completion = field(body, "max_completion_tokens", int, None)
    if params["max_tokens"] is None:
        params["max_tokens"] = completion
    elif completion is not None and completion != params["max_tokens"]:
        raise InvalidRequest("give max_tokens or max_completion_tokens, not two different values")
    if params["max_tokens"] is not None and params["max_tokens"] < 1:
        raise InvalidRequest("max_tokens must be at least 1")
    stop = field(body, "stop", (str, list), None)
    if stop is not None:
        stops = [stop] if isinstance(stop, str) else stop
        if len(stops) > MAX_STOPS or not all(isinstance(s, str) for s in stops):
            raise InvalidRequest(f"field 'stop' must be a string or a list of at most {MAX_STOPS} strings")
        params["stop"] = list(stops)
    logit_bias = field(body, "logit_bias", dict, None)
    if logit_bias:
        params["logit_bias"] = logit_bias
    return {k: v for k, v in params.items() if v is not None}


def choices(body: dict, stream: bool) -> int:
    """How many answers ``n`` asks for (several are generated one after the other; not streamed)."""
    n = field(body, "n", int, 1)
    if not 1 <= n <= MAX_CHOICES:
        raise InvalidRequest(f"n must be between 1 and {MAX_CHOICES}")
    if n > 1 and stream:
        raise InvalidRequest("n > 1 cannot be streamed; send stream: false, or one request per answer")
    return n


def chat_features(body: dict) -> dict[str, Any]:
    """Tools, structured output, log-probabilities and reasoning of a chat request, checked here (a 400
    before any model loads) and passed to the driver in OpenAI's shapes."""
    from corral.tools import read_effort, read_response_format, read_tools

    out: dict[str, Any] = {}
    tools = field(body, "tools", list, None)
    tool_choice = body.get("tool_choice")
    parallel = field(body, "parallel_tool_calls", bool, None)
    request = read_tools(tools, tool_choice, parallel)
    if request is not None:
        out["tools"] = tools
        if tool_choice is not None:
            out["tool_choice"] = tool_choice
        if parallel is not None:
            out["parallel_tool_calls"] = parallel
    out.update(_format(body))
    if field(body, "logprobs", bool, False):
        out["logprobs"] = True
        top = field(body, "top_logprobs", int, None)
        if top is not None:
            if not 0 <= top <= 20:
                raise InvalidRequest("top_logprobs must be between 0 and 20")
            out["top_logprobs"] = top
    elif body.get("top_logprobs") is not None:
        raise InvalidRequest("top_logprobs needs logprobs: true")
    effort = read_effort(field(body, "reasoning_effort", str, None))
    if effort is not None:
        out["reasoning_effort"] = effort
    return out


def completion_features(body: dict) -> dict[str, Any]:
    """A completion's ``logprobs`` (an integer: how many alternatives per token, as OpenAI's legacy
    completions) and ``response_format`` (a Corral extension), in the drivers' shapes."""
    out: dict[str, Any] = _format(body)
    top = field(body, "logprobs", int, None)
    if top is not None:
        if not 0 <= top <= 5:
            raise InvalidRequest("logprobs must be between 0 and 5 for completions")
        out.update(logprobs=True, top_logprobs=top)
    return out


def _format(body: dict) -> dict[str, Any]:
    from corral.tools import read_response_format

    value = field(body, "response_format", dict, None)
    if value is None or not read_response_format(value).constrained:
        return {}
    return {"response_format": value}
