"""Helpers the web UI's tests share: a library with the plugin, its server, opening the page."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Iterator

import corral_webui

#: Debian's Chromium (``apt-get install -y chromium``), headless, with nothing that calls home.
CHROMIUM = os.environ.get("CORRAL_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
#: Small and quick on a shared machine (as tests/gemma_served.py).
GEMMA_SETTINGS = {"n_ctx": 1024, "threads": 1, "threads_batch": 1}


def build_library(home: Path, *plugins: object) -> object:
    from corral.testing import build_host, open_library

    return open_library(home, build_host(entry_points=False, plugins=[corral_webui, *plugins]))


@contextlib.contextmanager
def served(library: object, api_key: str | None = None, **kwargs: object) -> Iterator[object]:
    """The library's server on a free loopback port, with the web UI registered."""
    from corral.testing import Runtime, ServerThread

    runtime = Runtime(library)
    try:
        with ServerThread(runtime, api_key=api_key, **kwargs) as server:
            yield server
    finally:
        runtime.close()


def open_ui(page, server, fragment: str = "") -> None:
    """Open the UI and wait until the library table has been filled."""
    page.goto(server.url + "/" + fragment)
    page.wait_for_selector("body[data-ready=true]")
