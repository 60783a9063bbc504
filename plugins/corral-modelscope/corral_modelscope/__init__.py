"""Corral's ModelScope download source (``--source modelscope``).

Registering costs nothing: the source class is plain Python; the modelscope client is imported only when a
search, listing or download runs.
"""

from __future__ import annotations

from corral import hookimpl
from corral_modelscope.source import ModelScopeSource

__all__ = ["ModelScopeSource"]


@hookimpl
def register_sources(register):
    register(ModelScopeSource)
