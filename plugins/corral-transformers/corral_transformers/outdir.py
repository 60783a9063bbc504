"""Output directories that are never silently overwritten and never left half-written.

Files are written into a hidden staging folder inside the output directory and moved into place only
when every one of them is complete; ``config.json`` moves last, so a reader never finds a config without
its weights.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

from corral.api import Conflict
from corral_transformers.errors import OutputNotWritable

STAGING_PREFIX = ".corral-partial-"


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_output_dir(out: Path, *, force: bool = False, need_bytes: int = 0) -> Path:
    """The absolute output directory, after checking it can take ``need_bytes`` of new files.

    Refuses a path that is a file or lies under one, a directory that cannot be written, a directory that
    already holds files (unless ``force``), and a disk without room for ``need_bytes``.
    """
    out = Path(out).expanduser().absolute()
    if out.exists() and not out.is_dir():
        raise OutputNotWritable(f"{out} is a file, not a directory; choose a directory for --out")
    base = _nearest_existing(out)
    if not base.is_dir():
        raise OutputNotWritable(f"{out}: {base} is a file, so no directory can be created there; choose another --out")
    if out.is_dir() and any(not p.name.startswith(STAGING_PREFIX) for p in out.iterdir()) and not force:
        raise Conflict(f"{out} is not empty; choose a new directory, or pass --force to overwrite the files Corral writes")
    try:
        # A real write, not os.access: permissions, read-only mounts and ACLs all show up here.
        with tempfile.TemporaryFile(dir=base):
            pass
    except OSError as exc:
        raise OutputNotWritable(f"{out}: cannot write in {base} ({exc.strerror or exc}); choose another --out") from None
    free = shutil.disk_usage(base).free
    if need_bytes > free:
        raise OutputNotWritable(
            f"{out}: the files need about {_gb(need_bytes)} but the disk has {_gb(free)} free; free space or choose another --out"
        )
    return out


def _gb(n: int) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


@contextmanager
def staged(out: Path, last: Sequence[str] = ("config.json",)) -> Iterator[Path]:
    """Yield a staging folder inside ``out``; on success move its files into ``out`` (``last`` ones last).

    On any error the staging folder is removed and ``out`` keeps exactly what it had before.
    """
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        for stale in out.glob(STAGING_PREFIX + "*"):  # left by a run that was killed
            shutil.rmtree(stale, ignore_errors=True)
        stage = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=out))
    except OSError as exc:
        raise OutputNotWritable(f"{out}: cannot create the directory ({exc.strerror or exc}); choose another --out") from None
    try:
        yield stage
        names = sorted(p.name for p in stage.iterdir())
        for name in sorted(names, key=lambda n: (n in last, last.index(n) if n in last else 0, n)):
            target = out / name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            os.replace(stage / name, target)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        if created:
            shutil.rmtree(out, ignore_errors=True)  # it held nothing but the staging folder
        raise
    shutil.rmtree(stage, ignore_errors=True)
