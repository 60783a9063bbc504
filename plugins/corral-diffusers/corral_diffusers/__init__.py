"""Corral plugin: image and video generation models through diffusers (SD, SDXL, FLUX, Wan).

Importing this module costs nothing: the driver declares what it handles through class attributes, and
torch / diffusers are imported only when a model is loaded.
"""

from corral import hookimpl
from corral_diffusers.detect import check_image_lora, detect_gguf_image
from corral_diffusers.driver import DiffusersDriver

__all__ = ["DiffusersDriver", "check_lora", "detect_model", "register_drivers"]


@hookimpl
def register_drivers(register):
    """Register the diffusers driver (image models, any number of LoRAs)."""
    register(DiffusersDriver)


@hookimpl
def detect_model(path):
    """GGUF image denoisers (``general.architecture`` flux, sd1, sdxl, sd3, wan); None for anything else."""
    return detect_gguf_image(path)


@hookimpl
def check_lora(base, lora):
    """LoRAs for image models: the family must match (SD 1.x and SDXL UNets are one family); None for
    other bases, left to the core."""
    return check_image_lora(base, lora)
