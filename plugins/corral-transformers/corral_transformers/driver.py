"""The transformers driver: what it declares when plugins register (nothing heavy), what it does on a load."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from corral.api import Driver, backend_status
from corral.api import BackendStatus, Category, Format, LoraRequest, Model

from corral_transformers.options import SETTINGS


class TransformersDriver(Driver):
    """Hugging Face causal LMs (text generation, and chat through the tokenizer's chat template) with any
    number of weighted PEFT LoRA adapters."""

    name = "transformers"
    distribution = "corral-transformers"
    # CHAT for a Hugging Face folder imported as a chat model; GGUF chat models belong to llama.cpp.
    categories = frozenset({Category.TEXT_GENERATION, Category.CHAT})
    formats = frozenset({Format.HF_DIR, Format.SAFETENSORS, Format.PYTORCH_PICKLE})
    requires = ("transformers", "torch")
    max_loras = None
    settings = SETTINGS

    @classmethod
    def check(cls) -> BackendStatus:
        """Are transformers and torch importable, and what can they use here (CUDA GPUs, Apple GPU,
        bitsandbytes quantization, PEFT adapters)."""
        import importlib.util

        import attrs

        status = backend_status(cls.name, cls.distribution, cls.requires)
        if not status.available:
            return status
        try:
            import torch
        except Exception as exc:  # a broken install: an ABI mismatch, a missing shared library
            return attrs.evolve(status, available=False, problem=f"torch cannot be imported ({exc})",
                                install="pip install --force-reinstall torch")
        accel = [f"torch {torch.__version__}"]
        if torch.cuda.is_available():
            names = sorted({torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())})
            accel.append(f"cuda {torch.version.cuda}: {torch.cuda.device_count()} GPU(s) ({', '.join(names)})")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            accel.append("mps")
        for optional, feature in (("peft", "LoRA adapters"), ("bitsandbytes", "int8/int4/nf4"),
                                  ("accelerate", "device_map")):
            if importlib.util.find_spec(optional) is not None:
                accel.append(f"{optional} ({feature})")
        return attrs.evolve(status, acceleration=tuple(accel))

    def load(self, model: Model, settings: Mapping[str, Any], loras: Sequence[LoraRequest] = ()):
        """Load a causal LM from its folder (or a lone weight file beside its config), with its LoRAs."""
        from corral_transformers.loader import load

        return load(model, settings, loras)
