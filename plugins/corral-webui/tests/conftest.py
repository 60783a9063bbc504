"""Fixtures for the web UI's browser tests: Debian's Chromium driven by Playwright for Python, a server
with this plugin around a library of its own, and a page that refuses (and records) every request to a
host other than this machine.

The tests skip, saying why, when Playwright or Chromium is missing (``apt-get install -y chromium``;
Playwright's own browser download is not used).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # ui_helpers

from ui_helpers import CHROMIUM, CHROMIUM_ARGS, build_library, served  # noqa: E402

LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


@pytest.fixture(scope="session")
def browser():
    """One headless Chromium for the session."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install -y chromium)")
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


class Traffic:
    """Every request a page made, and those to a host that is not this machine (refused)."""

    def __init__(self) -> None:
        self.urls: list[str] = []
        self.foreign: list[str] = []

    def handle(self, route) -> None:
        url = route.request.url
        self.urls.append(url)
        parts = urlsplit(url)
        if parts.scheme in ("data", "blob", "about") or (parts.hostname or "") in LOOPBACK:
            route.continue_()
        else:
            self.foreign.append(url)
            route.abort()


@pytest.fixture
def traffic() -> Traffic:
    return Traffic()


@pytest.fixture
def page(browser, traffic) -> Iterator[object]:
    """A fresh browser context and page whose every request goes through ``traffic``; at the end no
    request may have gone beyond this machine."""
    context = browser.new_context(service_workers="block")
    context.route("**/*", traffic.handle)
    page = context.new_page()
    page.set_default_timeout(30_000)
    try:
        yield page
    finally:
        context.close()
    assert not traffic.foreign, f"the page asked hosts beyond this machine: {traffic.foreign}"


@pytest.fixture
def ui_home(tmp_path) -> Path:
    home = tmp_path / "corral-home"
    home.mkdir()
    return home


@pytest.fixture
def ui_library(ui_home) -> Iterator[object]:
    """A library with only the web UI plugin (and the core's built-ins)."""
    library = build_library(ui_home)
    try:
        yield library
    finally:
        library.store.close()


@pytest.fixture
def ui_server(ui_library) -> Iterator[object]:
    with served(ui_library) as server:
        yield server
