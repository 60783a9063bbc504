"""Corral plugin: embedding and rerank (cross-encoder) models through sentence-transformers.

Importing this module costs nothing: the driver declares what it handles through class attributes, and
torch / sentence_transformers are imported only when a model is loaded.
"""

from corral import hookimpl
from corral_sentence_transformers.driver import SentenceTransformersDriver

__all__ = ["SentenceTransformersDriver", "register_drivers"]


@hookimpl
def register_drivers(register):
    """Register the sentence-transformers driver (embedding + rerank)."""
    register(SentenceTransformersDriver)
