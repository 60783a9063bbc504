"""The llama-server driver: what it declares when plugins register (nothing heavy), what it does on a load."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from corral.api import Driver, backend_status
from corral.api import BackendStatus, Category, Format, LoraRequest, Model

from corral_llama_server.options import SETTINGS


class LlamaServerDriver(Driver):
    """GGUF chat, multimodal, embedding and rerank models through llama.cpp's server engine (xllamacpp):
    several requests decoded together in one batch (continuous batching)."""

    name = "llama-server"
    distribution = "corral-llama-server"
    categories = frozenset({Category.CHAT, Category.MULTIMODAL, Category.EMBEDDING, Category.RERANK})
    formats = frozenset({Format.GGUF})
    requires = ("xllamacpp",)
    max_loras = 1
    settings = SETTINGS
    #: Below corral-llamacpp (0): a model's ``driver`` setting picks this one; where it is the only
    #: driver of a model (GGUF embeddings and rerankers), it serves without being asked.
    priority = -10

    @classmethod
    def check(cls) -> BackendStatus:
        """Is xllamacpp importable, which version, and which devices and CPU features llama.cpp uses;
        advice when this CPU has features the build leaves out (the PyPI wheels are portable builds)."""
        import attrs

        from corral_llama_server.build import built_features, cpu_flags, missing_features

        status = backend_status(cls.name, cls.distribution, cls.requires)
        if not status.available:
            return status
        try:
            import xllamacpp as x

            devices = [f"{str(d['type']).rsplit('_', 1)[-1].lower()}:{d['name']} ({d['description']})"
                       for d in x.get_device_info()]
            info = x.get_system_info()
        except (ImportError, OSError, AttributeError, RuntimeError) as exc:
            return attrs.evolve(
                status,
                available=False,
                problem=f"xllamacpp is installed but cannot be loaded ({type(exc).__name__}: {exc})",
                install="pip install --force-reinstall xllamacpp",
            )
        cpu = built_features(info)
        missing = missing_features(cpu, cpu_flags())
        advice = (f"this xllamacpp does not use {', '.join(missing)}, which this CPU has; "
                  "`corral llama-server build` builds it for this CPU (minutes)") if missing else None
        return attrs.evolve(status, acceleration=(*devices, *(f"cpu:{f}" for f in cpu)), advice=advice)

    def load(self, model: Model, settings: Mapping[str, Any], loras: Sequence[LoraRequest] = ()):
        """Load a GGUF model (with its mmproj, at most one GGUF LoRA, and a draft model if set)."""
        from corral_llama_server.loader import load

        return load(model, settings, loras)
