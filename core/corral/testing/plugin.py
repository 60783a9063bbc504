"""Corral's pytest plugin: the fixtures the conformance suite and plugin tests use.

pytest loads it in every run through the ``pytest11`` entry point of the ``corral`` distribution (turn it
off with ``-p no:corral``). It imports no backend library and defines only ``corral_*`` fixtures.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from corral.records import Format

# Plain asserts in the suite explain themselves in a failing plugin's test report.
pytest.register_assert_rewrite("corral.testing.conformance", "corral.testing.sample")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "corral_conformance: a test of Corral's plugin conformance suite")


@pytest.fixture
def corral_plugin(request: pytest.FixtureRequest) -> str:
    """The entry-point name of the plugin under test: the test class's ``plugin`` attribute.

    Override this fixture to test a plugin from module-level test functions.
    """
    name = getattr(request.cls, "plugin", "") if request.cls is not None else ""
    if not name:
        pytest.fail("set `plugin = \"<entry-point name>\"` on the test class, or define a corral_plugin fixture")
    return name


@pytest.fixture
def corral_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty ``CORRAL_HOME`` for one test."""
    home = tmp_path / "corral-home"
    monkeypatch.setenv("CORRAL_HOME", str(home))
    return home


@pytest.fixture
def corral_plugin_host(corral_plugin: str, monkeypatch: pytest.MonkeyPatch) -> Iterator:
    """A plugin host with the core's built-in plugins and only the plugin under test, loaded from its
    entry point as ``corral`` itself would; installed as the process-wide host for the test."""
    from corral.plugins import build_host, set_host

    monkeypatch.setenv("CORRAL_LOAD_PLUGINS", corral_plugin)
    for name in ("CORRAL_DISABLE_PLUGINS", "CORRAL_STRICT_PLUGINS"):
        monkeypatch.delenv(name, raising=False)
    host = build_host()
    if corral_plugin in host.failures:
        pytest.fail(f"plugin {corral_plugin!r} failed to load: {host.failures[corral_plugin].error}")
    if host.pm.get_plugin(corral_plugin) is None:
        pytest.fail(f"no entry point {corral_plugin!r} in group 'corral': is the plugin installed (pip install -e .)?")
    set_host(host)
    yield host
    set_host(None)


@pytest.fixture
def corral_library(corral_home: Path, corral_plugin_host) -> Iterator:
    """An empty library in ``corral_home`` served by ``corral_plugin_host``."""
    from corral.library import open_library

    library = open_library(corral_home, corral_plugin_host)
    yield library
    library.store.close()


@pytest.fixture
def corral_sample(corral_plugin: str):
    """The plugin's own small model: define this fixture (returning a :class:`corral.testing.Sample` or a
    list of them) in the plugin's test class when it registers drivers or detects files."""
    pytest.fail(
        f"plugin {corral_plugin!r} needs a sample model: define a `corral_sample` fixture in its test class "
        "returning corral.testing.Sample(path, task=...) (see docs/plugins.md, 'Conformance suite')"
    )


@pytest.fixture
def corral_foreign_paths(tmp_path_factory: pytest.TempPathFactory, corral_plugin_host, corral_plugin: str) -> dict:
    """Files and a folder the plugin's ``detect_model`` must answer ``None`` for, by kind.

    A GGUF file and a safetensors file are left out when one of the plugin's drivers declares that
    format. Override to add the plugin's own near misses.
    """
    from corral.testing.conformance import owned
    from corral.testing.files import write_foreign_paths

    paths = write_foreign_paths(tmp_path_factory.mktemp("foreign"))
    declared = {f for d in owned(corral_plugin_host, corral_plugin, "drivers") for f in d.formats}
    for kind, fmt in (("gguf", Format.GGUF), ("safetensors", Format.SAFETENSORS)):
        if fmt in declared:
            del paths[kind]
    return paths
