"""What the core's detection does not know about image models: GGUF denoisers and image LoRAs.

GGUF image models (FLUX, SD, SDXL, SD3 and Wan transformers quantized for diffusers or ComfyUI) carry no
tokenizer; the core would take them for chat models. Their ``general.architecture`` says what they are.
Only corral and the standard library are used here: detection runs at import and scan time.
"""

from __future__ import annotations

from pathlib import Path

from corral.api import FLUX, IMAGE_TAGS, SD, SD3, SDXL, VIDEO_TAGS, WAN
from corral.api import Incompatible
from corral.api import Category, Detection, Facts, Format, Kind, Model

#: general.architecture of GGUF image denoisers -> Corral's family name.
GGUF_IMAGE_ARCHS = {"flux": FLUX, "sd1": SD, "sdxl": SDXL, "sd3": SD3, "wan": WAN}
#: Families whose LoRAs and checkpoints are interchangeable as far as names can tell (a UNet LoRA's
#: ``unet.*`` keys fit SD 1.x and SDXL alike; shapes decide at load).
_SD_FAMILY = frozenset({SD, SDXL, "unet"})


def detect_gguf_image(path: Path) -> Detection | None:
    """A GGUF image denoiser, or None for any other file."""
    if path.suffix.lower() != ".gguf" or not path.is_file():
        return None
    from corral.api import quantization_name, read_gguf_header

    header = read_gguf_header(path)
    arch = header.architecture
    family = GGUF_IMAGE_ARCHS.get(arch or "")
    if family is None:
        return None
    quant = quantization_name(header.metadata.get("general.file_type"), header.tensors)
    tags = VIDEO_TAGS if family == WAN else IMAGE_TAGS
    reasons = (f"GGUF v{header.version} header: {len(header.tensors)} tensors",
               f"general.architecture = {arch}: a {family} denoiser for diffusers (no tokenizer: not a language "
               "model)")
    return Detection(path=path, kind=Kind.MODEL, format=Format.GGUF, category=Category.IMAGE, confidence=0.9,
                     reasons=reasons, paths=(path,), size=header.file_size,
                     facts=Facts(architecture=family, parameters=header.parameters or None, quantization=quant,
                                 extra={"tags": list(tags), "tensor_count": len(header.tensors)}))


def _group(family: str | None) -> str | None:
    return "sd" if family in _SD_FAMILY else family


def check_image_lora(base: Model, lora: Detection) -> bool | None:
    """Whether an adapter fits an image model (None: the base is not an image model)."""
    if base.category != Category.IMAGE:
        return None
    if lora.format == Format.GGUF:
        raise Incompatible(f"LoRA {lora.path.name} is a GGUF adapter (for llama.cpp); image models take "
                           ".safetensors LoRAs")
    if lora.category not in (None, Category.IMAGE):
        raise Incompatible(f"LoRA {lora.path.name} adapts {lora.category} models; base {base.path.name} is an "
                           "image model")
    la, ba = lora.facts.architecture, base.facts.architecture
    if la and ba and _group(la) != _group(ba):
        raise Incompatible(f"LoRA {lora.path.name} is for {la}, base {base.path.name} is {ba}")
    return True
