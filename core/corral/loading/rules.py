"""The load rules: which loaded models a new load replaces, when a load is the same as one already held,
and how many LoRAs one load may carry.

* One base model per load group; loading another replaces it. A category's group is what its plugin
  declared (``CategorySpec.group``; a category without one is its own group).
* Chat, multimodal and text-generation models are language models that share the group ``language``:
  loading any of them replaces whichever of them is loaded (chat and multimodal are never loaded
  together; a transformers text-generation model competes with them for the same memory and requests).
* Embedding, rerank, image and TTS models each have their own group, so they coexist with each other and
  with the language model; so does a category a third-party plugin adds without a group.
* The same base model with the same LoRA set (and weights) and the same settings is the same load:
  asking for it again reuses what is loaded.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from corral.errors import Incompatible
from corral.records import Category, LoraRequest, Model

if TYPE_CHECKING:
    from corral.plugins import PluginHost


def slot(category: Category, host: PluginHost) -> str:
    """The slot a category occupies (its declared load group): at most one loaded model per slot."""
    return host.load_group(category)


def same_slot(a: Category, b: Category, host: PluginHost) -> bool:
    return slot(a, host) == slot(b, host)


def config_key(model_id: str, loras: Sequence[LoraRequest], settings: Mapping[str, Any]) -> tuple:
    """What makes two loads the same: base model, LoRA set with weights, and settings."""
    lora_set = tuple(sorted((r.lora.id, float(r.weight)) for r in loras))
    return (model_id, lora_set, json.dumps(dict(settings), sort_keys=True, default=str))


def check_lora_count(model: Model, driver_name: str, max_loras: int | None, count: int) -> None:
    """Refuse more LoRAs than the driver loads at once (chat GGUF: one; image and transformers: any)."""
    if max_loras is not None and count > max_loras:
        allowed = "no LoRAs" if max_loras == 0 else f"at most {max_loras} LoRA{'s' if max_loras > 1 else ''}"
        raise Incompatible(f"{model.name}: the {driver_name} driver loads {allowed} at once, {count} asked")
