"""PEFT LoRA adapters on a loaded transformers model: several at once, each with its own weight.

Each adapter is checked against the live base model before PEFT sees it (every module it adapts exists,
with the input and output widths the adapter's matrices need), then loaded under its own name
(``PeftModel.from_pretrained`` for the first, ``load_adapter`` for the rest) and all are made active
together. A LoRA layer adds ``B(A(x)) * scaling`` per active adapter; Corral multiplies each adapter's
``scaling`` by its weight, so the weight scales that adapter's delta exactly and adapters add up. An
adapter of weight 0 is checked but not loaded: the model is then exactly the base model.

``add_weighted_adapter`` is not used: its ``linear`` mode mixes the A and B matrices separately
(``(ΣwB)(ΣwA)`` is not ``ΣwBA``) and needs equal ranks, and ``cat`` builds a new adapter as large as
all of them.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any, Sequence

from attrs import frozen

from corral.api import CorralError, Incompatible, NotFound, PluginMissing, UnsafeFile
from corral.api import Lora, LoraRequest, Model

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_FILES = ("adapter_model.safetensors", "adapter_model.bin")
#: How many mismatching modules a message names before it says "and N more".
_SHOWN = 3
_LORA_TENSOR = re.compile(r"^(?:base_model\.model\.)?(?P<module>.+)\.lora_(?P<side>[AB])(?:\.[^.]+)?\.weight$")


@frozen
class Adapter:
    """One adapter applied to the loaded model: its record, weight, and the name PEFT knows it by."""

    lora: Lora
    weight: float
    name: str
    folder: Path


def adapter_folder(lora: Lora) -> Path:
    """The adapter's folder: its recorded path, or its snapshot in the Hugging Face cache (offline)."""
    from corral_transformers.locate import cached_snapshot

    path = Path(lora.path)
    if path.is_file() and path.name in ADAPTER_FILES + (ADAPTER_CONFIG,):
        path = path.parent
    if not path.exists():
        cached = cached_snapshot(lora.provenance)
        if cached is None:
            raise NotFound(f"LoRA {lora.name}: {path} is gone; bind it again (corral lora add BASE PATH)")
        path = cached
    if not (path / ADAPTER_CONFIG).is_file():
        raise Incompatible(
            f"LoRA {lora.name}: {path} is not a PEFT adapter folder (no {ADAPTER_CONFIG}); transformers models "
            "take PEFT adapters saved with save_pretrained"
        )
    return path


def _config(lora: Lora, folder: Path) -> dict[str, Any]:
    from corral.api import read_json

    data = read_json(folder / ADAPTER_CONFIG)
    if not isinstance(data, dict):
        raise Incompatible(f"LoRA {lora.name}: {folder / ADAPTER_CONFIG} is not a JSON object")
    kind = str(data.get("peft_type") or "LORA").upper()
    if kind != "LORA":
        raise Incompatible(f"LoRA {lora.name}: {folder} is a PEFT {kind} adapter; Corral applies LoRA adapters only")
    return data


def adapter_shapes(lora: Lora, folder: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape of the adapter's weights (safetensors header, or torch's weights-only loader)."""
    from corral.api import shapes_of

    weights = next((folder / n for n in ADAPTER_FILES if (folder / n).is_file()), None)
    if weights is None:
        raise Incompatible(f"LoRA {lora.name}: {folder} holds no {' or '.join(ADAPTER_FILES)}; finish the download")
    if weights.suffix == ".safetensors":
        return shapes_of(weights) or {}
    from corral_transformers.pickles import load_weights_only

    return {name: tuple(t.shape) for name, t in load_weights_only(weights, what=f"LoRA {lora.name}").items()}


def _widths(module: Any) -> tuple[int, int] | None:
    """(inputs, outputs) of a layer LoRA can adapt, or None for one it cannot."""
    if hasattr(module, "in_features") and hasattr(module, "out_features"):
        return int(module.in_features), int(module.out_features)
    if type(module).__name__ == "Conv1D" and hasattr(module, "nx") and hasattr(module, "nf"):
        return int(module.nx), int(module.nf)  # GPT-2's transposed linear layers
    return None


def check_fits(lm: Any, model: Model, lora: Lora, folder: Path) -> None:
    """Raise :class:`Incompatible` unless every module the adapter changes exists in ``lm`` with the
    widths its A (rank × inputs) and B (outputs × rank) matrices need."""
    shapes = adapter_shapes(lora, folder)
    problems: list[str] = []
    matched = 0
    for name, shape in sorted(shapes.items()):
        found = _LORA_TENSOR.match(name)
        if found is None or len(shape) != 2:
            continue  # embedding or convolution LoRA tensors: PEFT checks those itself
        path, side = found["module"], found["side"]
        try:
            module = lm.get_submodule(path)
        except AttributeError:
            problems.append(f"{path}: the base model has no such module")
            continue
        widths = _widths(module)
        if widths is None:
            problems.append(f"{path}: a {type(module).__name__}, which a LoRA cannot adapt")
            continue
        matched += 1
        inputs, outputs = widths
        if side == "A" and shape[1] != inputs:
            problems.append(f"{path}: LoRA expects {shape[1]} inputs, base has {inputs}")
        elif side == "B" and shape[0] != outputs:
            problems.append(f"{path}: LoRA produces {shape[0]} outputs, base has {outputs}")
    if problems:
        more = f"; and {len(problems) - _SHOWN} more" if len(problems) > _SHOWN else ""
        raise Incompatible(f"LoRA {lora.name} ({folder}) does not fit {model.name}: "
                           + "; ".join(problems[:_SHOWN]) + more)
    if not matched and shapes:
        raise Incompatible(f"LoRA {lora.name} ({folder}) adapts none of {model.name}'s modules")


def apply(lm: Any, model: Model, requests: Sequence[LoraRequest]) -> tuple[Any, tuple[Adapter, ...]]:
    """Check every adapter against ``lm``, then load the ones of non-zero weight, active together.

    Returns the model to generate with (``lm`` itself, its layers now carrying the adapters) and the
    adapters applied.
    """
    checked = []
    for n, request in enumerate(requests):
        folder = adapter_folder(request.lora)
        config = _config(request.lora, folder)
        check_fits(lm, model, request.lora, folder)
        if config.get("use_dora") and request.weight not in (0, 1):
            raise Incompatible(
                f"LoRA {request.lora.name} is a DoRA adapter, whose effect does not scale with a weight; "
                "load it with weight 1 (or 0 to leave it out)"
            )
        checked.append(Adapter(lora=request.lora, weight=float(request.weight), name=f"lora{n}", folder=folder))
    applied = tuple(a for a in checked if a.weight != 0)
    if not applied:
        return lm, ()
    try:
        from peft import PeftModel
        from peft.tuners.lora import LoraLayer
    except ImportError:
        raise PluginMissing(f"{model.name}: applying LoRA adapters needs peft: pip install peft",
                            distribution="peft") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # deprecations inside peft, not the user's concern
            first = applied[0]
            peft_model = PeftModel.from_pretrained(lm, str(first.folder), adapter_name=first.name, is_trainable=False)
            for adapter in applied[1:]:
                peft_model.load_adapter(str(adapter.folder), adapter_name=adapter.name, is_trainable=False)
            peft_model.base_model.set_adapter([a.name for a in applied])
            peft_model.requires_grad_(False)  # inference only (older peft marks active adapters trainable)
    except CorralError:
        raise
    except Exception as exc:  # PEFT's size mismatches and missing target modules
        import pickle

        if isinstance(exc, pickle.UnpicklingError):
            raise UnsafeFile(f"{model.name}: a LoRA's adapter_model.bin holds more than tensors, and torch's "
                             f"weights-only loader refused it ({exc}); convert it to safetensors") from None
        why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        names = ", ".join(a.lora.name for a in applied)
        raise Incompatible(f"{model.name}: PEFT could not apply LoRA {names} ({why})") from None
    weights = {a.name: a.weight for a in applied}
    for module in lm.modules():
        if isinstance(module, LoraLayer):
            for name, weight in weights.items():
                if name in module.scaling:
                    module.scaling[name] = module.scaling[name] * weight
    return peft_model.get_base_model(), applied
