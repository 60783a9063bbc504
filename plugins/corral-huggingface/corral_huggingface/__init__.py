"""Corral's Hugging Face download source (``--source huggingface``, the default).

Registering costs nothing: the source class is plain Python; ``huggingface_hub`` is imported only when a
search, listing or download runs.
"""

from __future__ import annotations

from corral import hookimpl
from corral_huggingface.source import HuggingFaceSource

__all__ = ["HuggingFaceSource"]


@hookimpl
def register_sources(register):
    register(HuggingFaceSource)
