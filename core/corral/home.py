"""Where Corral keeps its data: ``CORRAL_HOME``, or the platform's user data directory."""

from __future__ import annotations

import os
from pathlib import Path


def corral_home() -> Path:
    """The data directory (library database, manifests, server state)."""
    env = os.environ.get("CORRAL_HOME")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("corral", appauthor=False))


def library_db() -> Path:
    return corral_home() / "library.db"
