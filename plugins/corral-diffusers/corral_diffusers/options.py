"""Load settings read into typed options, and the torch device and dtype they come to."""

from __future__ import annotations

from typing import Any, Mapping

import attrs

from corral.errors import InvalidSetting
from corral.records import Model
from corral.settings import coerce
from corral_diffusers.driver import SETTINGS

_DEVICE_KINDS = ("cpu", "cuda", "mps")
_DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16",
           "float32": "float32", "float16": "float16", "bfloat16": "bfloat16"}
#: Families whose activations overflow in float16: bfloat16 is their GPU default.
_BF16_FAMILIES = ("flux", "wan", "sd3")


@attrs.frozen
class Options:
    """A model's load settings, checked and typed."""

    device: str | None = None
    dtype: str | None = None
    attention_slicing: bool = False
    vae_tiling: bool = False
    cpu_offload: str = "none"
    config: str | None = None

    @classmethod
    def read(cls, model: Model, settings: Mapping[str, Any]) -> "Options":
        """Typed options from saved settings plus overrides (HTTP callers may send strings)."""
        values = {}
        for spec in SETTINGS:
            value = settings.get(spec.name)
            if value is not None:
                values[spec.name] = coerce(spec, value, model.name)
        device = values.get("device")
        if device is not None and device.split(":")[0] not in _DEVICE_KINDS:
            raise InvalidSetting(f"{model.name}: device {device!r} is not cpu, cuda, cuda:N or mps; "
                                 f"fix it: corral settings {model.name} --set device=cpu")
        if "dtype" in values:
            values["dtype"] = _DTYPES[values["dtype"]]
        return cls(**values)


def resolve_device(model: Model, device: str | None) -> str:
    """The torch device to run on: the asked one after checking it exists, else cuda, mps or cpu."""
    import torch

    mps = getattr(torch.backends, "mps", None)
    has_mps = mps is not None and mps.is_available()
    if device is None:
        return "cuda" if torch.cuda.is_available() else "mps" if has_mps else "cpu"
    kind, _, index = device.partition(":")
    if kind == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise InvalidSetting(f"{model.name}: device {device} asked for, but torch {torch.__version__} sees no "
                                 f"CUDA GPU; use the CPU: corral settings {model.name} --set device=cpu")
        if index and (not index.isdigit() or int(index) >= count):
            raise InvalidSetting(f"{model.name}: device {device} does not exist ({count} CUDA GPU(s): cuda:0.."
                                 f"cuda:{count - 1})")
    if kind == "mps" and not has_mps:
        raise InvalidSetting(f"{model.name}: device mps asked for, but this torch has no usable MPS; "
                             f"use the CPU: corral settings {model.name} --set device=cpu")
    if kind in ("cpu", "mps") and index:
        raise InvalidSetting(f"{model.name}: device {device}: {kind} takes no index; use device={kind}")
    return device


def torch_dtype(model: Model, dtype: str | None, device: str) -> Any:
    """The weights dtype: the asked one, else float32 on the CPU and a half type on accelerators."""
    import torch

    if dtype is None:
        if device == "cpu":
            dtype = "float32"
        else:
            family = model.facts.architecture or ""
            dtype = "bfloat16" if family in _BF16_FAMILIES else "float16"
    return getattr(torch, dtype)
