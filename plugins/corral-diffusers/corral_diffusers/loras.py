"""LoRA adapters on an image pipeline: any number, each from a file or a folder, each with its weight,
all active together (``load_lora_weights`` per adapter, then one ``set_adapters``).

The adapter's tensors are read here (safetensors, or a pickle through torch's ``weights_only`` loader)
and handed to diffusers as a state dict, so diffusers converts kohya, BFL and diffusers layouts alike.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Sequence

from corral.api import CorralError, Incompatible, NotFound
from corral.api import Format, LoraRequest, Model

_WEIGHT_NAMES = ("pytorch_lora_weights.safetensors", "adapter_model.safetensors", "pytorch_lora_weights.bin",
                 "adapter_model.bin")


def adapter_file(path: Path) -> Path:
    """The weights file of a LoRA given as a file or a folder."""
    if path.is_file():
        return path
    for name in _WEIGHT_NAMES:
        if (path / name).is_file():
            return path / name
    found = sorted(p for p in path.glob("*.safetensors") if p.is_file())
    if len(found) == 1:
        return found[0]
    raise NotFound(f"{path}: no LoRA weights in this folder (looked for {', '.join(_WEIGHT_NAMES[:2])} or a "
                   "single .safetensors)")


def read_state_dict(path: Path) -> dict[str, Any]:
    """A LoRA file's tensors; pickles only through ``torch.load(weights_only=True)``."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    import torch

    data = torch.load(str(path), map_location="cpu", weights_only=True)
    if not isinstance(data, dict):
        raise Incompatible(f"{path}: not a LoRA state dict")
    return data


def adapter_names(loras: Sequence[LoraRequest]) -> list[str]:
    """One valid, distinct adapter name per LoRA (PEFT names become module attributes)."""
    names: list[str] = []
    for request in loras:
        base = re.sub(r"\W", "_", request.lora.name) or "lora"
        name, n = base, 2
        while name in names:
            name, n = f"{base}_{n}", n + 1
        names.append(name)
    return names


def apply_loras(model: Model, pipe: Any, loras: Sequence[LoraRequest]) -> list[str]:
    """Load every LoRA onto ``pipe`` and activate them together with their weights; returns the names."""
    if not loras:
        return []
    if not hasattr(pipe, "load_lora_weights"):
        raise Incompatible(f"{model.name}: a {type(pipe).__name__} takes no LoRA adapters")
    names = adapter_names(loras)
    for request, name in zip(loras, names):
        lora = request.lora
        if lora.format == Format.GGUF:
            raise Incompatible(f"LoRA {lora.name}: GGUF adapters are for llama.cpp; image LoRAs are .safetensors")
        path = Path(lora.path)
        if not path.exists():
            raise NotFound(f"LoRA {lora.name}: {path} is missing; restore it or remove it: corral lora rm {lora.name}")
        weights = adapter_file(path)
        try:
            state = read_state_dict(weights)
            before = _adapters(pipe)
            pipe.load_lora_weights(state, adapter_name=name)
        except CorralError:
            raise
        except Exception as exc:
            text = " ".join(str(exc).split())[:300]
            raise Incompatible(f"LoRA {lora.name} ({weights.name}) does not fit {model.name}: {text}") from None
        if name not in _adapters(pipe) - before:
            raise Incompatible(f"LoRA {lora.name} ({weights.name}) changes none of {model.name}'s layers: it was "
                               "made for another model")
    pipe.set_adapters(names, adapter_weights=[float(r.weight) for r in loras])
    return names


def _adapters(pipe: Any) -> set[str]:
    return {name for names in pipe.get_list_adapters().values() for name in names}
