"""The llama.cpp driver: what it declares when plugins register (nothing heavy), what it does on a load."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from corral.api import Driver, backend_status
from corral.api import BackendStatus, Category, Format, LoraRequest, Model

from corral_llamacpp.options import SETTINGS


class LlamaCppDriver(Driver):
    """Chat and multimodal GGUF models through llama-cpp-python."""

    name = "llamacpp"
    distribution = "corral-llamacpp"
    categories = frozenset({Category.CHAT, Category.MULTIMODAL})
    formats = frozenset({Format.GGUF})
    requires = ("llama_cpp",)
    max_loras = 1
    settings = SETTINGS

    @classmethod
    def check(cls) -> BackendStatus:
        """Is llama-cpp-python importable, which version, and what llama.cpp was built with (GPU offload,
        devices, CPU features)."""
        import attrs

        status = backend_status(cls.name, cls.distribution, cls.requires)
        if not status.available:
            return status
        try:
            from corral_llamacpp import devices

            accel = devices.acceleration()
        except (ImportError, OSError, AttributeError) as exc:
            return attrs.evolve(
                status,
                available=False,
                problem=f"llama_cpp is installed but cannot be loaded ({type(exc).__name__}: {exc})",
                install="pip install --force-reinstall llama-cpp-python",
            )
        return attrs.evolve(status, acceleration=accel)

    def load(self, model: Model, settings: Mapping[str, Any], loras: Sequence[LoraRequest] = ()):
        """Load a GGUF chat or multimodal model (with its mmproj, and at most one GGUF LoRA)."""
        from corral_llamacpp.loader import load

        return load(model, settings, loras)
