"""Fixtures for the llama.cpp plugin's tests: a plugin host and library with this plugin, tiny GGUF models,
and the real Gemma 3 270M loaded once per module."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # llamacpp_factories

from llamacpp_factories import GEMMA_SETTINGS  # noqa: E402
from corral.testing import open_model


@pytest.fixture
def host():
    """A plugin host with the core's built-ins and this plugin (no other installed entry points)."""
    import corral_llamacpp

    from corral.testing.hosts import installed_host

    with installed_host(corral_llamacpp) as fresh:
        yield fresh


@pytest.fixture
def tiny_path(tmp_path) -> Path:
    from factories import write_tiny_gguf

    return write_tiny_gguf(tmp_path / "tiny" / "tiny-chat.gguf")


@pytest.fixture
def tiny(library, tiny_path):
    """The tiny random-weight llama GGUF, imported."""
    return library.import_path(tiny_path).model


@pytest.fixture(scope="module")
def gemma_library(tmp_path_factory, gemma_path):
    """A library of its own holding the real Gemma, shared by one test module."""
    import corral_llamacpp
    from corral.testing import open_library
    from corral.testing import build_host

    lib = open_library(tmp_path_factory.mktemp("gemma-home"), build_host(entry_points=False, plugins=[corral_llamacpp]))
    lib.import_path(gemma_path, name="gemma")
    yield lib
    lib.store.close()


@pytest.fixture(scope="module")
def gemma(gemma_library):
    """The real Gemma 3 270M, loaded once per module through Corral (small context, one thread)."""
    with open_model(gemma_library, "gemma", overrides=GEMMA_SETTINGS) as handle:
        yield handle
