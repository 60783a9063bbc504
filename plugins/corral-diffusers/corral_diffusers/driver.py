"""The driver class: what it loads (image models as diffusers folders, single files, GGUF), what it
needs, which settings it reads.

Only corral and the standard library are imported here; torch and diffusers come in inside
:meth:`DiffusersDriver.load` and :meth:`DiffusersDriver.check`.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from corral.api import LoadedModel, TorchDriver, Unsupported
from corral.api import Category, Format, LoraRequest, Model, SettingSpec

DISTRIBUTION = "corral-diffusers"

#: The settings this driver reads (``corral settings MODEL --set name=value``). ``device`` and ``dtype``
#: exist in the core too and are declared again with what they mean here.
SETTINGS: tuple[SettingSpec, ...] = (
    SettingSpec("device", str, "cpu, cuda, cuda:N or mps; unset: cuda if present, else mps, else cpu", None),
    SettingSpec("dtype", str, "weights precision: fp32, fp16 or bf16 (float32, float16, bfloat16 too); unset: "
                "fp32 on the CPU, bf16 for FLUX and Wan on a GPU, fp16 for the rest", None,
                ("fp32", "fp16", "bf16", "float32", "float16", "bfloat16")),
    SettingSpec("attention_slicing", bool, "compute attention in slices: less memory, a little slower", False),
    SettingSpec("vae_tiling", bool, "decode (and encode) images in tiles: large sizes in little memory", False),
    SettingSpec("cpu_offload", str, "keep weights in system memory and move each model (model) or each layer "
                "(sequential) to the GPU when it runs; CUDA only, nothing to do on the CPU", "none",
                ("none", "model", "sequential")),
    SettingSpec("config", str, "for single-file models: a local diffusers pipeline folder (model_index.json, "
                "configs, tokenizers; weights not needed), or a Hugging Face repo id found in the local cache; "
                "unset: the repo diffusers names for the model's family, from the local cache", None),
)


class DiffusersDriver(TorchDriver):
    """Image and video generation (text-to-image, image-to-image, video) through diffusers pipelines."""

    name = "diffusers"
    distribution = DISTRIBUTION
    categories = frozenset({Category.IMAGE})
    formats = frozenset({Format.DIFFUSERS_DIR, Format.SAFETENSORS, Format.GGUF, Format.PYTORCH_PICKLE})
    requires = ("diffusers", "torch")
    max_loras = None
    settings = SETTINGS

    def load(self, model: Model, settings: Mapping[str, Any], loras: Sequence[LoraRequest] = ()) -> LoadedModel:
        """Assemble ``model``'s pipeline (offline), apply its LoRAs and settings; return the live handle."""
        if model.category != Category.IMAGE:
            raise Unsupported(f"{model.name}: the diffusers driver loads image models, not {model.category}")
        from corral_diffusers.handle import load_image_model

        return load_image_model(model, settings, loras)
