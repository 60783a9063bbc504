"""Corral: a library of local AI models, extended by plugins.

Plugins implement the hooks in :mod:`corral.hookspecs` with the :data:`hookimpl` marker and register the
module (or object) under the ``corral`` entry-point group.
"""

from typing import Any

__version__ = "0.1.0"

__all__ = ["hookimpl", "__version__"]


def __getattr__(name: str) -> Any:
    """``hookimpl``, the marker for plugin hook implementations (``@corral.hookimpl``), made on first
    use: commands that load no plugin (``corral ls``) never import pluggy."""
    if name == "hookimpl":
        import pluggy

        marker = pluggy.HookimplMarker("corral")
        globals()["hookimpl"] = marker
        return marker
    raise AttributeError(f"module 'corral' has no attribute {name!r}")
