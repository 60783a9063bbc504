"""Pytest fixtures around the fake hub; import them into a test module to use them:

    from fakehub.fixtures import corral, hub  # noqa: F401

``hub`` is one server per test module; ``corral`` runs the real ``corral`` CLI in a subprocess whose
environment points huggingface_hub, the modelscope client and Corral at the hub, with fresh caches and a
fresh library per test.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from fakehub import FakeHub


class Corral:
    """``corral ARGS`` in a subprocess with the hub's environment."""

    def __init__(self, env: dict[str, str], home: Path) -> None:
        self.env = env
        self.home = home

    @property
    def hf_cache(self) -> Path:
        return Path(self.env["HF_HOME"]) / "hub"

    @property
    def ms_cache(self) -> Path:
        return Path(self.env["MODELSCOPE_CACHE"])

    def __call__(self, *args, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "corral", *map(str, args)],
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def ok(self, *args, **kwargs) -> subprocess.CompletedProcess:
        result = self(*args, **kwargs)
        assert result.returncode == 0, f"corral {' '.join(map(str, args))}\n{result.stdout}\n{result.stderr}"
        assert "Traceback" not in result.stderr, result.stderr
        return result

    def json(self, *args, **kwargs):
        return json.loads(self.ok(*args, "--json", **kwargs).stdout)

    def popen(self, *args, env: dict[str, str] | None = None) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "corral", *map(str, args)],
            env={**self.env, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def python(self, code: str, env: dict[str, str] | None = None) -> str:
        """Run ``code`` in a fresh interpreter with the hub's environment (clients read it at import)."""
        out = subprocess.run([sys.executable, "-c", code], env={**self.env, **(env or {})},
                             capture_output=True, text=True, timeout=120)  # fmt: skip
        assert out.returncode == 0, out.stderr
        return out.stdout


def one_error_line(result: subprocess.CompletedProcess, *fragments: str) -> str:
    """The run failed with one clear ``Error:`` line on stderr (no traceback) holding ``fragments``."""
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def point_here(monkeypatch, hub: FakeHub, home: Path) -> None:
    """Point this process at ``hub`` (huggingface_hub reads HF_ENDPOINT at call time) with caches and the
    library under ``home``, for tests that run the server in-process; the hub's switches are reset."""
    hub.reset()
    for key in ("HF_TOKEN", "HF_HUB_OFFLINE", "HF_HUB_CACHE"):
        monkeypatch.delenv(key, raising=False)
    for key, value in hub.env(home=home).items():
        monkeypatch.setenv(key, value)


def sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def wait_for(predicate, timeout: float = 60.0, what: str = "the condition"):
    """``predicate()``'s first true value, asked every 50 ms for up to ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.05)


@contextlib.contextmanager
def hub_server(monkeypatch, hub: FakeHub, caches: Path, home: Path, *, state: bool = False) -> Iterator[object]:
    """A server in this process (its state file written with ``state``, so ``corral`` commands find it)
    whose library at ``home`` has the Hugging Face plugin, pointed at ``hub`` with caches under ``caches``;
    the server's ``home`` is the library's folder."""
    import corral_huggingface

    from corral.testing import build_host, open_library, serving

    point_here(monkeypatch, hub, caches)
    library = open_library(home, build_host(entry_points=False, plugins=[corral_huggingface]))
    try:
        with serving(library, state=state) as running:
            running.home = home
            yield running
    finally:
        library.store.close()


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    with FakeHub.start(tmp_path_factory.mktemp("fakehub")) as running:
        yield running


@pytest.fixture
def corral(hub, tmp_path) -> Corral:
    hub.reset()
    home = tmp_path / "home"
    home.mkdir()
    return Corral(hub.env(dict(os.environ), home=home), home)
