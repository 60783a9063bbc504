"""Hub file names are untrusted: refuse absolute names and names that climb out of the destination."""

from __future__ import annotations

import re
from pathlib import Path

from corral.pull.errors import UnsafeName

_DRIVE_RE = re.compile(r"^[A-Za-z]:")


def unsafe_reason(name: str) -> str | None:
    """Why ``name`` cannot be written under a download folder, or None when it can."""
    if not name or not name.strip():
        return "an empty name"
    if any(ord(c) < 32 or c == "\x7f" for c in name):
        return "a control character"
    if name.startswith(("/", "\\")) or _DRIVE_RE.match(name):
        return "an absolute path"
    if "\\" in name:
        return "a backslash"
    parts = name.split("/")
    if ".." in parts:
        return "a '..' that climbs out of the folder"
    if any(p in ("", ".") for p in parts):
        return "an empty or '.' path part"
    return None


def check_names(names: list[str], where: str) -> None:
    """Raise :class:`UnsafeName` naming every unsafe entry; nothing is written before this passes."""
    bad = [(n, r) for n in names if (r := unsafe_reason(n)) is not None]
    if bad:
        shown = "; ".join(f"{n!r} ({r})" for n, r in bad[:4]) + (" ..." if len(bad) > 4 else "")
        raise UnsafeName(f"{where} lists unsafe file names: {shown}. Refusing to download anything from it")


def inside(root: Path, name: str) -> Path:
    """``root / name`` after checking ``name`` and that its folder (symlinks resolved) stays in ``root``.

    The last part may itself be a link (a hub cache's snapshot entry): files are replaced, never
    written through.
    """
    reason = unsafe_reason(name)
    if reason is not None:
        raise UnsafeName(f"file name {name!r} has {reason}; refusing to write it")
    path = root.joinpath(*name.split("/"))
    real_root = root.resolve()
    folder = path.parent.resolve()
    if folder != real_root and real_root not in folder.parents:
        raise UnsafeName(f"{path.parent} resolves to {folder}, outside {root}; refusing to write {name!r} there")
    return path
