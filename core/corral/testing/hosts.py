"""A plugin host for tests: the core's built-ins plus the plugin modules given, without entry points."""

from __future__ import annotations

from contextlib import contextmanager
from types import ModuleType
from typing import Iterator


@contextmanager
def installed_host(*plugins: ModuleType) -> Iterator:
    """A fresh host with the built-in plugins and ``plugins`` (no installed entry points), installed as
    the process-wide one while the block runs::

        @pytest.fixture
        def host():
            with installed_host(corral_mybackend) as fresh:
                yield fresh
    """
    from corral.plugins import build_host, set_host

    fresh = build_host(entry_points=False, plugins=list(plugins))
    set_host(fresh)
    try:
        yield fresh
    finally:
        set_host(None)
