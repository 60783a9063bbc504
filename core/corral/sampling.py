"""A generation request's sampling parameters, checked once for every text-generating driver.

Names follow OpenAI and llama.cpp; ``repetition_penalty`` is accepted for ``repeat_penalty`` and
``max_new_tokens`` / ``n_predict`` for ``max_tokens``. Each driver says which parameters its backend has;
the others are ignored, as the driver interface says.
"""

from __future__ import annotations

from typing import Any, Mapping

from corral.errors import InvalidSetting

ALIASES = {"repetition_penalty": "repeat_penalty", "max_new_tokens": "max_tokens", "n_predict": "max_tokens"}
_KIND_NAMES = {int: "an integer", float: "a number"}


def read_sampling(params: Mapping[str, Any], types: Mapping[str, type]) -> tuple[dict[str, Any], tuple[str, ...]]:
    """The parameters of ``params`` named in ``types`` (after aliases), typed, and the stop strings.

    ``types`` maps a parameter to ``int``, ``float`` or ``dict`` (``dict``: OpenAI's ``logit_bias``, token
    id -> bias). Unset (``None``) parameters are left out. ``stop`` is a string or a list of strings.

    :raises InvalidSetting: a value of the wrong type, a negative temperature, a repeat penalty that is
        not positive, or a ``top_p`` outside (0, 1].
    """
    values: dict[str, Any] = {}
    stop: tuple[str, ...] = ()
    for raw_name, value in params.items():
        name = ALIASES.get(raw_name, raw_name)
        if value is None:
            continue
        if name == "stop":
            stop = _stops(value)
            continue
        kind = types.get(name)
        if kind is None:
            continue  # a parameter this backend does not have
        if kind is dict:
            values[name] = _logit_bias(value)
            continue
        wrong = f"{raw_name} must be {_KIND_NAMES.get(kind, kind.__name__)}, got {value!r}"
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise InvalidSetting(wrong)
        try:
            values[name] = kind(value)
        except (TypeError, ValueError):
            raise InvalidSetting(wrong) from None
    if values.get("temperature", 0) < 0:
        raise InvalidSetting("temperature cannot be negative")
    if values.get("repeat_penalty", 1) <= 0:
        raise InvalidSetting("repeat_penalty must be positive (1 = no penalty)")
    if "top_p" in values and not 0 < values["top_p"] <= 1:
        raise InvalidSetting("top_p must be in (0, 1]")
    return values, stop


def _logit_bias(value: Any) -> dict[int, float]:
    """OpenAI's ``logit_bias``: token id (int or numeric string) -> bias added to its logit."""
    if not isinstance(value, Mapping):
        raise InvalidSetting(f"logit_bias must map token ids to numbers, got {value!r}")
    try:
        return {int(k): float(v) for k, v in value.items()}
    except (TypeError, ValueError):
        raise InvalidSetting(f"logit_bias must map token ids to numbers, got {value!r}") from None


def _stops(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,) if value else ()
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return tuple(v for v in value if v)
    raise InvalidSetting(f"stop must be a string or a list of strings, got {value!r}")
