"""What plugin authors build and test with: the conformance suite every Corral plugin passes
(:class:`Conformance`), the sample record it loads (:class:`Sample`), small model files written with the
standard library (:mod:`corral.testing.files`), checks of CLI results (:mod:`corral.testing.cli`) and the plugin template ``corral plugin new`` renders.

Usage, in a plugin's ``tests/test_conformance.py``::

    from corral.testing import Conformance

    class TestConformance(Conformance):
        plugin = "mybackend"

Names are imported on first use, so ``corral.testing.files`` and the template need no pytest.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Conformance": "corral.testing.conformance",
    "Sample": "corral.testing.sample",
    "as_json": "corral.testing.cli",
    "assert_clean_error": "corral.testing.cli",
    "installed_host": "corral.testing.hosts",
    "ok": "corral.testing.cli",
    "write_foreign_paths": "corral.testing.files",
    "write_tiny_gguf": "corral.testing.files",
    "write_tiny_safetensors": "corral.testing.files",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'corral.testing' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
