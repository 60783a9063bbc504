"""What plugin authors build and test with: the conformance suite every Corral plugin passes
(:class:`Conformance`), the sample record it loads (:class:`Sample`), small model files written with the
standard library (:mod:`corral.testing.files`), checks of CLI results (:mod:`corral.testing.cli`), the plugin template ``corral plugin new`` renders,
and the core's library, plugin host, runtime, server and CLI for end-to-end tests.

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
    # The core's entry points that plugin tests drive (the library, a plugin host, the runtime, the
    # server and the CLI): tests reach them here, so the core may move them without breaking plugins.
    "Library": "corral.library",
    "Runtime": "corral.runtime",
    "RunnerProcesses": "corral.runtime.executor",
    "ServerThread": "corral.server.serve",
    "serving": "corral.testing.servers",
    "serve_process": "corral.testing.servers",
    "build_cli": "corral.cli",
    "driver_for": "corral.loading",
    "open_model": "corral.loading",
    "plan_load": "corral.loading",
    "build_host": "corral.plugins",
    "free_memory": "corral.estimate",
    "open_library": "corral.library",
    "set_host": "corral.plugins",
    "Conformance": "corral.testing.conformance",
    "Sample": "corral.testing.sample",
    "as_json": "corral.testing.cli",
    "assert_clean_error": "corral.testing.cli",
    "installed_host": "corral.testing.hosts",
    "ok": "corral.testing.cli",
    "write_foreign_paths": "corral.testing.files",
    "write_tiny_gguf": "corral.testing.files",
    "write_tiny_safetensors": "corral.testing.files",
    "scan": "corral.adopt",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'corral.testing' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
