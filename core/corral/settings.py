"""Saved load settings: the core's common ones, plus whatever the model's driver declares."""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from corral.errors import InvalidSetting
from corral.records import SettingSpec

#: Settings every backend may honour; drivers add their own through ``Driver.settings``.
CORE_SETTINGS: tuple[SettingSpec, ...] = (
    SettingSpec("n_ctx", int, "context length in tokens; 0 = the model's own", 0, minimum=0),
    SettingSpec("n_gpu_layers", int, "layers offloaded to the GPU; -1 = all", 0, minimum=-1),
    SettingSpec("threads", int, "CPU threads; 0 = automatic", 0, minimum=0),
    SettingSpec("device", str, "cpu, cuda, cuda:N or mps", None),
    SettingSpec("dtype", str, "weights precision", None, ("auto", "float32", "float16", "bfloat16")),
    SettingSpec("seed", int, "random seed", None),
    SettingSpec("trust_remote_code", bool, "run the model repository's own Python code", False),
    SettingSpec("request_timeout", float, "seconds one request may run in the server before it is cancelled; "
                "0 = no limit", 1800.0, minimum=0),
)

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def coerce(spec: SettingSpec, value: Any, model_name: str) -> Any:
    """Turn a CLI string (or JSON value) into the setting's type, checking choices and range."""
    try:
        if spec.type is bool and isinstance(value, str):
            lowered = value.lower()
            if lowered not in _TRUE | _FALSE:
                raise ValueError(value)
            value = lowered in _TRUE
        elif spec.type is float and isinstance(value, str):
            value = float(value)
        elif spec.type is int and isinstance(value, str):
            value = int(value)
        elif spec.type is list and isinstance(value, str):
            value = [float(v) for v in value.split(",") if v.strip()]
        elif not isinstance(value, spec.type):
            value = spec.type(value)
    except (TypeError, ValueError):
        raise InvalidSetting(
            f"{model_name}: setting {spec.name} wants a {spec.type.__name__}, got {value!r}"
        ) from None
    if spec.choices and value not in spec.choices:
        choices = ", ".join(map(str, spec.choices))
        raise InvalidSetting(f"{model_name}: setting {spec.name} must be one of {choices}, got {value!r}")
    if spec.minimum is not None and value < spec.minimum:
        raise InvalidSetting(f"{model_name}: setting {spec.name} must be at least {spec.minimum}")
    if spec.maximum is not None and value > spec.maximum:
        raise InvalidSetting(f"{model_name}: setting {spec.name} must be at most {spec.maximum}")
    return value


def merged_specs(extra: Iterable[SettingSpec]) -> dict[str, SettingSpec]:
    specs = {s.name: s for s in CORE_SETTINGS}
    specs.update({s.name: s for s in extra})
    return specs


def apply_updates(
    current: Mapping[str, Any],
    updates: Mapping[str, Any],
    unset: Iterable[str],
    specs: Mapping[str, SettingSpec],
    model_name: str,
    hint: str = "",
) -> dict[str, Any]:
    """The new settings after ``updates`` and ``unset``; unknown names are refused with the known ones."""
    result = dict(current)
    for name in [*updates, *unset]:
        if name not in specs:
            known = ", ".join(sorted(specs))
            raise InvalidSetting(f"{model_name}: unknown setting {name!r} (known: {known}){hint}")
    for name in unset:
        result.pop(name, None)
    for name, value in updates.items():
        result[name] = coerce(specs[name], value, model_name)
    return result


DEVICE_KINDS = ("cpu", "cuda", "mps")


def read_settings(specs: Iterable[SettingSpec], settings: Mapping[str, Any], model_name: str) -> dict[str, Any]:
    """The typed values of ``specs`` found in ``settings`` (saved ones plus overrides; HTTP callers may
    send strings), with ``device`` checked to be cpu, cuda, cuda:N or mps."""
    values = {}
    for spec in specs:
        value = settings.get(spec.name)
        if value is not None:
            values[spec.name] = coerce(spec, value, model_name)
    device = values.get("device")
    if device is not None and str(device).split(":")[0] not in DEVICE_KINDS:
        raise InvalidSetting(
            f"{model_name}: device {device!r} is not cpu, cuda, cuda:N or mps; "
            f"fix it: corral settings {model_name} --set device=cpu"
        )
    return values
