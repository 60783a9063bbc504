"""``corral ui``: prints the address and opens the browser; starts a background server when none runs."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request
import webbrowser

import pytest

import corral_webui
from ui_helpers import served


@pytest.fixture
def cli(ui_home, monkeypatch):
    from click.testing import CliRunner

    from corral.testing import build_cli, build_host, set_host

    monkeypatch.setenv("CORRAL_HOME", str(ui_home))
    monkeypatch.setenv("CORRAL_PORT", "0")  # a free port, never 8420 on a shared machine
    monkeypatch.delenv("CORRAL_API_KEY", raising=False)
    opened = []
    monkeypatch.setattr(webbrowser, "open", lambda url, *a, **k: opened.append(url) or True)
    set_host(build_host(entry_points=False, plugins=[corral_webui]))
    try:
        yield (lambda *args: CliRunner().invoke(build_cli(), list(args), catch_exceptions=False)), opened
    finally:
        set_host(None)


def test_ui_uses_the_running_server(cli, ui_library):
    invoke, opened = cli
    with served(ui_library, state=True) as server:
        result = invoke("ui")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"Corral's web UI: {server.url}/"
    assert opened == [f"{server.url}/"]


def test_ui_starts_a_server_when_none_runs(cli, ui_home):
    invoke, opened = cli
    result = invoke("ui", "--no-browser")
    state = json.loads((ui_home / "server.json").read_text())
    try:
        assert result.exit_code == 0, result.output
        url = f"http://127.0.0.1:{state['port']}/"
        assert result.output.strip() == f"Corral's web UI: {url}"
        assert opened == []
        with urllib.request.urlopen(url, timeout=30) as answer:
            assert b"<title>Corral</title>" in answer.read()
    finally:
        os.kill(state["pid"], signal.SIGTERM)
        deadline = time.monotonic() + 60
        while (ui_home / "server.json").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
