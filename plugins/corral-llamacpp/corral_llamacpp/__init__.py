"""Corral plugin: chat and multimodal GGUF models through llama.cpp (llama-cpp-python).

Registration declares the driver only; llama_cpp is imported when a model loads or ``corral env`` runs.
"""

from corral import hookimpl

from corral_llamacpp.driver import LlamaCppDriver

__all__ = ["LlamaCppDriver"]


@hookimpl
def register_drivers(register):
    """Register the llama.cpp driver."""
    register(LlamaCppDriver)
