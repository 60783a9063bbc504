"""Adopting models already on disk, in place: any folder, or another tool's store through a registered
:class:`corral.ext.layout.StoreLayout` (the core's Hugging Face cache, Ollama and LM Studio layouts are
registered by its built-in plugin; a plugin adds more with ``register_store_layouts``). The adoption
itself (:mod:`corral.adopt.engine`) is shared: detection, names, provenance, dedupe by size + SHA-256,
and reporting records whose files vanished.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from corral.errors import NotFound
from corral.ext.layout import Found, StoreLayout

if TYPE_CHECKING:
    from corral.intake import ScanEntry
    from corral.library import Library

_SPLIT = re.compile(r"-0*1-of-\d+$", re.IGNORECASE)
_SEPARATORS = "-_./ "


def is_projector(path: Path) -> bool:
    """A GGUF whose name says it is a multimodal projector (detection attaches it to its model)."""
    return path.suffix.lower() == ".gguf" and "mmproj" in path.name.lower()


def unit_names(label: str, base: Path, paths: list[Path]) -> dict[Path, str]:
    """Names for the models found under one repository or model folder.

    GGUF files whose names state their quantizations take ``label:QUANT`` (``org/repo:Q4_K_M``), as Ollama
    names what it pulls from Hugging Face, alone or beside others. Otherwise one model takes ``label``
    itself and several take ``label:tag``, the tag being what tells their names apart. Projectors get no
    name: they are attached, not recorded.
    """
    from corral.pull.variants import quant_of

    models = [p for p in paths if not is_projector(p)]
    quants = [quant_of(p.name) if p.suffix.lower() == ".gguf" else None for p in models]
    if models and all(quants) and len(set(quants)) == len(quants):
        return {p: f"{label}:{q}" for p, q in zip(models, quants, strict=True)}
    if len(models) == 1:
        return {models[0]: label}
    stems = []
    for p in models:
        rel = os.path.relpath(p, base)
        if not os.path.isdir(p):
            rel = rel[: -len(p.suffix)] if p.suffix else rel
        stems.append(_SPLIT.sub("", rel))
    prefix = os.path.commonprefix(stems)
    cut = max((prefix.rfind(c) for c in _SEPARATORS), default=-1) + 1 if len(set(stems)) > 1 else 0
    return {p: f"{label}:{stem[cut:] or stem}" for p, stem in zip(models, stems, strict=True)}


def store_layout(host: Any, layout: str) -> type[StoreLayout]:
    """The registered layout ``layout``."""
    found = host.store_layout(layout)
    if found is None:
        names = ", ".join(host.store_layout_names())
        raise NotFound(f"unknown store layout {layout!r}; known: {names}")
    return found


def default_root(layout: type[StoreLayout]) -> Path:
    """Where the tool behind ``layout`` keeps its models: the first of its usual places that exists."""
    roots = layout.default_roots()
    for root in roots:
        if root.is_dir():
            return root
    where = " or ".join(str(r) for r in roots)
    raise NotFound(f"no {layout.label} folder at {where}; pass the folder: corral scan DIR {layout.option or '--layout ' + layout.name}")


def scan(
    library: "Library",
    root: Path | None = None,
    *,
    layout: str | None = None,
    dry_run: bool = False,
    allow_unsafe: bool = False,
) -> list["ScanEntry"]:
    """Adopt what ``root`` holds (a plain folder, or the store named by ``layout``) in place."""
    from corral.adopt.engine import adopt

    store = store_layout(library.host, layout) if layout is not None else None
    if root is None:
        if store is None:
            raise NotFound("give a folder to scan, or a store: --hf-cache, --ollama, --lmstudio or --layout NAME")
        root = default_root(store)
    root = Path(root).expanduser()
    if not root.is_dir():
        raise NotFound(f"{root}: not a directory")
    if store is None:
        from corral.detect import iter_candidates

        found = (Found(p) for p in iter_candidates(root.resolve()))
    else:
        found = store.find(root)
    return adopt(library, root, found, dry_run=dry_run, allow_unsafe=allow_unsafe)
