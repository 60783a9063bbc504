"""Fixtures for the Kokoro plugin's tests: a plugin host with this plugin in it, a tiny random-weight
Kokoro model built once per session through kokoro's own KModel, and no hub access at all."""

from __future__ import annotations

from pathlib import Path

import pytest

import corral_kokoro
from corral.testing import driver_for


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """Everything the tests load comes from local files: the hub client is told it is offline."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture
def host():
    """The built-in plugins plus this one (entry points stay off, as in the core's tests)."""
    from corral.testing.hosts import installed_host

    with installed_host(corral_kokoro) as fresh:
        yield fresh


@pytest.fixture(scope="session")
def kokoro_dir(tmp_path_factory) -> Path:
    """A tiny Kokoro-82M-shaped folder (config.json, kokoro-v1_0.pth, voices af_heart, bf_emma,
    zf_xiaobei), built once per session."""
    from corral_kokoro.testing import write_tiny_kokoro

    return write_tiny_kokoro(tmp_path_factory.mktemp("kokoro") / "Kokoro-tiny")


@pytest.fixture(scope="module")
def speech(kokoro_dir, tmp_path_factory):
    """The tiny model loaded once per test module through the library (CPU)."""
    from corral.testing import open_library
    from corral.testing import build_host

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        library = open_library(tmp_path_factory.mktemp("home"), build_host(entry_points=False, plugins=[corral_kokoro]))
        model = library.import_path(kokoro_dir, name="tiny").model
        handle = driver_for(library.host, model)().load(model, {"device": "cpu"})
        yield handle
        handle.unload()
        library.store.close()
