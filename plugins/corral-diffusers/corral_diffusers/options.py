"""Load settings read into typed options, and the torch device and dtype they come to."""

from __future__ import annotations

from typing import Any, Mapping

import attrs

from corral.api import Model
from corral.api import torch_device
from corral.api import read_settings
from corral_diffusers.driver import SETTINGS

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
        values = read_settings(SETTINGS, settings, model.name)
        if "dtype" in values:
            values["dtype"] = _DTYPES[values["dtype"]]
        return cls(**values)


def resolve_device(model: Model, device: str | None) -> str:
    """The torch device to run on: the asked one after checking it exists, else cuda, mps or cpu."""
    return torch_device(model.name, device)


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
