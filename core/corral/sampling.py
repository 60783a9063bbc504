"""A generation request's sampling parameters, checked once for every text-generating driver.

Names follow OpenAI and llama.cpp; ``repetition_penalty`` is accepted for ``repeat_penalty`` and
``max_new_tokens`` / ``n_predict`` for ``max_tokens``. Each driver says which parameters its backend has;
the others are ignored, as the driver interface says.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from corral.errors import InvalidSetting
from corral.records import SettingSpec

ALIASES = {"repetition_penalty": "repeat_penalty", "max_new_tokens": "max_tokens", "n_predict": "max_tokens"}

#: A model's own request defaults, saved like load settings (``corral settings MODEL --set
#: temperature=0.3``, or taken from an adopted Ollama model's Modelfile). Text-generating drivers declare
#: them with their settings and apply them with :func:`with_defaults` and :func:`with_system_prompt`; a
#: request's own value always wins.
DEFAULT_SETTINGS: tuple[SettingSpec, ...] = (
    SettingSpec("system_prompt", str, "system message put first in a chat that has none", None),
    SettingSpec("temperature", float, "default sampling temperature (a request's own wins)", None, minimum=0),
    SettingSpec("top_p", float, "default nucleus sampling share (0, 1]", None, minimum=0, maximum=1,
                exclusive_minimum=True),
    SettingSpec("top_k", int, "default top-k; 0 = off", None, minimum=0),
    SettingSpec("repeat_penalty", float, "default repeat penalty; 1 = none", None, minimum=0,
                exclusive_minimum=True),
    SettingSpec("max_tokens", int, "default answer length limit in tokens", None, minimum=1),
)
_DEFAULT_PARAMS = tuple(s.name for s in DEFAULT_SETTINGS if s.name != "system_prompt")
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


def with_defaults(settings: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """Request ``params`` with the model's saved defaults (:data:`DEFAULT_SETTINGS`) filled in where the
    request leaves them unset, under any of their names (``repetition_penalty`` counts as
    ``repeat_penalty``)."""
    given = {ALIASES.get(k, k) for k, v in params.items() if v is not None}
    out = dict(params)
    for name in _DEFAULT_PARAMS:
        if name not in given and settings.get(name) is not None:
            out[name] = settings[name]
    return out


def with_system_prompt(settings: Mapping[str, Any], messages: Sequence[Any]) -> list[Any]:
    """``messages`` with the model's saved ``system_prompt`` put first, unless the chat has a system
    message of its own (or the model has no saved one)."""
    system = settings.get("system_prompt")
    has_own = any(isinstance(m, Mapping) and m.get("role") == "system" for m in messages)
    if not system or has_own:
        return list(messages)
    return [{"role": "system", "content": str(system)}, *messages]


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
