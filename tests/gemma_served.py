"""The real Gemma 3 270M in a library of its own, served over HTTP: shared by the protocol tests
(test_anthropic_api.py, test_responses_api.py), one server per test module."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

#: Small and fast on a shared machine: a short context and one thread.
GEMMA_SETTINGS = {"n_ctx": 1024, "threads": 1, "threads_batch": 1}


@contextlib.contextmanager
def gemma_library(home: Path, gemma_path: Path) -> Iterator[object]:
    """A library at ``home`` with the llama.cpp plugin and the real Gemma imported as ``gemma``."""
    import corral_llamacpp

    from corral.testing import build_host, open_library

    library = open_library(home, build_host(entry_points=False, plugins=[corral_llamacpp]))
    library.import_path(gemma_path, name="gemma")
    library.update_settings("gemma", GEMMA_SETTINGS)
    try:
        yield library
    finally:
        library.store.close()


@contextlib.contextmanager
def serve(library: object, api_key: str) -> Iterator[object]:
    """A :class:`ServerThread` around a fresh runtime of ``library``, requiring ``api_key``."""
    from corral.testing import Runtime, ServerThread

    runtime = Runtime(library)
    try:
        with ServerThread(runtime, api_key=api_key) as server:
            yield server
    finally:
        runtime.close()
