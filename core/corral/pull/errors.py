"""What can go wrong in a pull (the classes live in :mod:`corral.errors`; re-exported here)."""

from __future__ import annotations

from corral.errors import DownloadError, IntegrityError, NoSpace, Paused, UnsafeName

__all__ = ["DownloadError", "IntegrityError", "NoSpace", "Paused", "UnsafeName"]
