"""LM Studio's models folder: ``<publisher>/<model>/`` holding GGUF files (with their ``mmproj-*.gguf``
projectors) or, for MLX models, a Hugging Face style folder.

The publisher/model pair is usually the Hugging Face repository the files came from; it is kept as the
provenance's repo under hub ``lmstudio`` (LM Studio does not record where files came from) and names
the model: ``publisher/model``, or ``publisher/model:Q4_K_M`` when the folder holds several.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

from corral.adopt import is_projector, unit_names
from corral.ext.layout import Found
from corral.records import Provenance

HUB = "lmstudio"


def default_roots() -> list[Path]:
    """~/.lmstudio/models (LM Studio 0.3 and later), else ~/.cache/lm-studio/models (earlier versions)."""
    return [Path("~/.lmstudio/models").expanduser(), Path("~/.cache/lm-studio/models").expanduser()]


def find(root: Path) -> Iterator[Found]:
    """Every model under ``root``, grouped by publisher/model folder for names and provenance."""
    from corral.detect import iter_candidates

    root = Path(os.path.realpath(root))
    groups: dict[tuple[str, ...], list[Path]] = {}
    for path in iter_candidates(root):
        rel = Path(os.path.relpath(path, root)).parts
        key = rel[:2] if len(rel) > 2 or (len(rel) == 2 and path.is_dir()) else ()
        groups.setdefault(key, []).append(path)
    for key, paths in groups.items():
        if not key:  # loose files outside the publisher/model layout: plain adoption
            yield from (Found(p) for p in paths)
            continue
        label = "/".join(key)
        base = root.joinpath(*key)
        names = unit_names(label, base, paths)
        for path in paths:
            files = () if path == base else (os.path.relpath(path, base),)
            provenance = Provenance(hub=HUB, repo=label, files=files)
            yield Found(path, None if is_projector(path) else names.get(path), provenance)
