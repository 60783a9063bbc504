"""Corral plugin: GGUF models through llama.cpp's server engine in-process (xllamacpp), with slots and
continuous batching.

Registration declares the driver only; xllamacpp is imported when a model loads or ``corral env`` runs.
"""

from corral import hookimpl

from corral_llama_server.driver import LlamaServerDriver

__all__ = ["LlamaServerDriver"]


@hookimpl
def register_drivers(register):
    """Register the llama-server driver."""
    register(LlamaServerDriver)
