"""Saved load settings: the core's common ones, plus whatever the model's driver declares."""

from __future__ import annotations

import os
from typing import Any, Iterable, Mapping

from corral.errors import InvalidSetting
from corral.records import Model, SettingSpec
from corral.suggest import did_you_mean

#: Settings every backend may honour; drivers add their own through ``Driver.settings``.
CORE_SETTINGS: tuple[SettingSpec, ...] = (
    SettingSpec("n_ctx", int, "context length in tokens; 0 = the model's own", 0, minimum=0),
    SettingSpec("n_gpu_layers", int, "layers offloaded to the GPU; -1 = all", 0, minimum=-1),
    SettingSpec("threads", int, "CPU threads; 0 = automatic", 0, minimum=0),
    SettingSpec("device", str, "auto (the driver chooses: a GPU when there is one), cpu, cuda, cuda:N or mps", None),
    SettingSpec("dtype", str, "weights precision", None, ("auto", "float32", "float16", "bfloat16")),
    SettingSpec("seed", int, "random seed", None),
    SettingSpec("trust_remote_code", bool, "run the model repository's own Python code", False),
    SettingSpec("request_timeout", float, "seconds one request may run in the server before it is cancelled; "
                "0 = no limit", 1800.0, minimum=0),
    SettingSpec("node", str, "cluster node to load the model on (corral serve --executor ray); "
                "unset = the executor chooses", None),
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
        close = did_you_mean(str(value), map(str, spec.choices))
        raise InvalidSetting(f"{model_name}: setting {spec.name} must be one of {choices}, got {value!r}"
                             + (f"; {close}" if close else ""))
    if spec.name == "device" and value is not None:
        check_device(value, model_name)
    if (wrong := spec.out_of_range(value)) is not None:
        raise InvalidSetting(f"{model_name}: setting {spec.name} {wrong}")
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
    model: Model | None = None,
) -> dict[str, Any]:
    """The new settings after ``updates`` and ``unset``; unknown names are refused with the closest known
    ones. With ``model``, values are also checked against what the model is (:func:`check_for_model`)."""
    result = dict(current)
    unset = list(unset)
    for name in [*updates, *unset]:
        if name not in specs:
            close = did_you_mean(name, specs)
            known = f"`corral settings {model_name}` lists them all" if close else f"known: {', '.join(sorted(specs))}"
            raise InvalidSetting(f"{model_name}: unknown setting {name!r}{'; ' + close if close else ''} "
                                 f"({known}){hint}")
    for name in unset:
        result.pop(name, None)
    for name, value in updates.items():
        result[name] = coerce(specs[name], value, model_name)
    if model is not None:
        check_for_model(result, model, specs, hint)
    return result


def rope_setting(settings: Mapping[str, Any]) -> str | None:
    """The first RoPE setting (``rope_*``) given a value other than the model's own (0, none or unset)."""
    return next((k for k, v in sorted(settings.items())
                 if k.startswith("rope") and v not in (None, 0, 0.0, "", "none")), None)


def check_for_model(settings: Mapping[str, Any], model: Model, specs: Iterable[str] = (), hint: str = "") -> None:
    """Refuse settings that make no sense for ``model``: a context longer than the one it was trained
    with (its detected ``context_length``) unless a RoPE setting extends it (``specs``: the known setting
    names, to say which RoPE settings its driver has)."""
    n_ctx, trained = settings.get("n_ctx"), model.facts.context_length
    if n_ctx and trained and n_ctx > trained and rope_setting(settings) is None:
        ropes = sorted(n for n in specs if n.startswith("rope"))
        extend = (f", or extend the context with a RoPE setting ({', '.join(ropes)}; e.g. --set "
                  f"rope_scaling_type=yarn --set rope_freq_scale={trained / n_ctx:.3g})"
                  if "rope_scaling_type" in ropes and "rope_freq_scale" in ropes
                  else f", or extend it with a RoPE setting ({', '.join(ropes)})" if ropes
                  else f" (no RoPE setting to extend it is known{hint})")
        raise InvalidSetting(f"{model.name}: n_ctx {n_ctx} is more than the {trained} tokens it was trained "
                             f"with; use at most {trained}{extend}")


def warnings_for(settings: Mapping[str, Any]) -> list[str]:
    """What is allowed but likely a mistake: more threads than this machine has CPU cores."""
    found = []
    threads, cores = settings.get("threads"), os.cpu_count()
    if threads and cores and threads > cores:
        found.append(f"threads={threads} is more than this machine's {cores} CPU cores; it will run slower, "
                     f"not faster (0 = automatic)")
    return found


DEVICE_KINDS = ("auto", "cpu", "cuda", "mps")


def check_device(device: Any, model_name: str) -> None:
    """Refuse a ``device`` that is not auto, cpu, cuda, cuda:N or mps."""
    kind, sep, index = str(device).partition(":")
    if kind not in DEVICE_KINDS or (sep and not index.isdigit()) or (sep and kind != "cuda"):
        close = did_you_mean(kind, DEVICE_KINDS)
        raise InvalidSetting(
            f"{model_name}: device {device!r} is not auto, cpu, cuda, cuda:N or mps"
            + (f" ({close})" if close else "")
            + f"; fix it: corral settings {model_name} --set device=cpu"
        )


def read_settings(specs: Iterable[SettingSpec], settings: Mapping[str, Any], model_name: str) -> dict[str, Any]:
    """The typed values of ``specs`` found in ``settings`` (saved ones plus overrides; HTTP callers may
    send strings), with ``device`` checked to be auto, cpu, cuda, cuda:N or mps; ``auto`` reads as unset
    (the driver's own choice)."""
    values = {}
    for spec in specs:
        value = settings.get(spec.name)
        if value is not None:
            values[spec.name] = coerce(spec, value, model_name)
    device = values.get("device")
    if device is not None:
        check_device(device, model_name)
        if device == "auto":
            del values["device"]
    return values


def describe(specs: Mapping[str, SettingSpec], saved: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every setting of ``specs`` (and any saved one no installed driver declares) with its default, its
    saved value and the value a load uses, sorted by name: what ``corral settings MODEL`` shows."""
    rows = []
    for name in sorted({*specs, *saved}):
        spec = specs.get(name)
        is_saved = name in saved
        rows.append({
            "name": name,
            "type": spec.type.__name__ if spec else None,
            "default": spec.default if spec else None,
            "saved": is_saved,
            "value": saved[name] if is_saved else (spec.default if spec else None),
            "choices": list(spec.choices) if spec and spec.choices else [],
            "minimum": spec.minimum if spec else None,
            "maximum": spec.maximum if spec else None,
            "exclusive_minimum": spec.exclusive_minimum if spec else False,
            "help": spec.help if spec else "not declared by an installed driver",
        })
    return rows
