"""Corral plugin: Kokoro text-to-speech models (config.json + .pth checkpoint + voices/*.pt).

Importing this module costs nothing: the driver declares what it handles through class attributes, and
torch, kokoro and misaki are imported only when a model is loaded.
"""

from corral import hookimpl
from corral_kokoro.driver import KokoroDriver

__all__ = ["KokoroDriver", "register_drivers"]


@hookimpl
def register_drivers(register):
    """Register the Kokoro driver (text-to-speech)."""
    register(KokoroDriver)
