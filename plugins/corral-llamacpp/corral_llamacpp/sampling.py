"""Sampling parameters of a request, normalised for llama-cpp-python.

Names follow OpenAI and llama.cpp (``repetition_penalty`` is accepted for ``repeat_penalty``, and
``logit_bias`` maps token ids to biases); parameters
llama.cpp does not have are ignored, as the driver interface says. Every request gets an explicit seed:
llama-cpp-python would otherwise derive the same one for every call of a loaded model.
"""

from __future__ import annotations

import random
from typing import Any, Mapping

from corral.errors import InvalidSetting

ALIASES = {"repetition_penalty": "repeat_penalty", "max_new_tokens": "max_tokens", "n_predict": "max_tokens"}

#: name -> (type, default). Defaults are llama.cpp's own (llama-server's), not llama-cpp-python's.
PARAMS: dict[str, tuple[type, Any]] = {
    "temperature": (float, 0.8),
    "top_p": (float, 0.95),
    "top_k": (int, 40),
    "min_p": (float, 0.05),
    "typical_p": (float, 1.0),
    "repeat_penalty": (float, 1.0),
    "presence_penalty": (float, 0.0),
    "frequency_penalty": (float, 0.0),
    "max_tokens": (int, None),
    "seed": (int, None),
}


def sampling(params: Mapping[str, Any], *, default_seed: int | None = None) -> dict[str, Any]:
    """Keyword arguments for ``create_completion`` / ``create_chat_completion`` from request ``params``.

    ``max_tokens`` unset (or 0) means: until the model stops or the context is full. ``stop`` is a string or
    a list of strings. The seed is the request's, else the model's ``seed`` setting, else a fresh random one.
    """
    out: dict[str, Any] = {name: default for name, (_, default) in PARAMS.items()}
    stop: list[str] = []
    for raw_name, value in params.items():
        name = ALIASES.get(raw_name, raw_name)
        if value is None:
            continue
        if name == "stop":
            stop = _stops(value)
            continue
        if name == "logit_bias":
            out["logit_bias"] = _logit_bias(value)
            continue
        if name not in PARAMS:
            continue  # a parameter llama.cpp does not have
        kind = PARAMS[name][0]
        try:
            out[name] = kind(value) if not isinstance(value, bool) else None
        except (TypeError, ValueError):
            out[name] = None
        if out[name] is None:
            raise InvalidSetting(f"{raw_name} must be a {kind.__name__}, got {value!r}")
    if out["temperature"] < 0:
        raise InvalidSetting("temperature cannot be negative")
    if out["max_tokens"] is not None and out["max_tokens"] <= 0:
        out["max_tokens"] = None
    if out["seed"] is None:
        out["seed"] = default_seed if default_seed is not None else random.getrandbits(31)
    out["stop"] = stop
    return out


def _logit_bias(value: Any) -> dict[int, float]:
    """OpenAI's ``logit_bias``: token id (int or numeric string) -> bias added to its logit."""
    if not isinstance(value, Mapping):
        raise InvalidSetting(f"logit_bias must map token ids to numbers, got {value!r}")
    try:
        return {int(k): float(v) for k, v in value.items()}
    except (TypeError, ValueError):
        raise InvalidSetting(f"logit_bias must map token ids to numbers, got {value!r}") from None


def _stops(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return [v for v in value if v]
    raise InvalidSetting(f"stop must be a string or a list of strings, got {value!r}")
