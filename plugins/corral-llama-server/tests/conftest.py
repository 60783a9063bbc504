"""Fixtures for the llama-server plugin's tests: a plugin host and library with this plugin, tiny GGUF
models, and the real Gemma 3 270M loaded once per module."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from corral.testing import open_model

#: corral-llamacpp's test files: a runnable tiny LLaVA projector and small PNGs, reused here.
LLAMACPP_TESTS = Path(__file__).resolve().parents[2] / "corral-llamacpp" / "tests"
sys.path.insert(0, str(LLAMACPP_TESTS))

#: The real model with short slots and one thread each: on a small shared machine llama.cpp's threads wait
#: on each other whenever another process takes a core.
GEMMA_SETTINGS = {"n_ctx": 256, "threads": 1, "threads_batch": 1, "parallel": 8}


@pytest.fixture
def host():
    """A plugin host with the core's built-ins and this plugin (no other installed entry points)."""
    import corral_llama_server

    from corral.testing import installed_host

    with installed_host(corral_llama_server) as fresh:
        yield fresh


@pytest.fixture
def tiny_path(tmp_path) -> Path:
    from corral.testing import write_tiny_gguf

    return write_tiny_gguf(tmp_path / "tiny" / "tiny-chat.gguf")


@pytest.fixture
def tiny(library, tiny_path):
    """The tiny random-weight llama GGUF, imported."""
    return library.import_path(tiny_path).model


@pytest.fixture(scope="module")
def gemma_library(tmp_path_factory, gemma_path):
    """A library of its own holding the real Gemma, shared by one test module."""
    import corral_llama_server

    from corral.testing import build_host, open_library

    home = tmp_path_factory.mktemp("gemma-home")
    lib = open_library(home, build_host(entry_points=False, plugins=[corral_llama_server]))
    lib.import_path(gemma_path, name="gemma")
    yield lib
    lib.store.close()


@pytest.fixture(scope="module")
def gemma(gemma_library):
    """The real Gemma 3 270M, loaded once per module through Corral with 8 slots."""
    with open_model(gemma_library, "gemma", overrides=GEMMA_SETTINGS) as handle:
        yield handle
