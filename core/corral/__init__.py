"""Corral: a library of local AI models, extended by plugins.

Plugins implement the hooks in :mod:`corral.hookspecs` with the :data:`hookimpl` marker and register the
module (or object) under the ``corral`` entry-point group.
"""

import pluggy

__version__ = "0.1.0"

#: Marker for plugin hook implementations: ``@corral.hookimpl``.
hookimpl = pluggy.HookimplMarker("corral")

__all__ = ["hookimpl", "__version__"]
