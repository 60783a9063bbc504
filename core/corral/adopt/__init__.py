"""Adopting models already on disk, in place: any folder, the Hugging Face cache, Ollama, LM Studio.

Each store layout is a module with ``LABEL``, ``default_roots()`` (where the tool keeps its models,
first existing wins) and ``find(root)`` (the models it holds, as :class:`Found`). The adoption itself
(:mod:`corral.adopt.engine`) is shared: detection, names, provenance, dedupe by size + SHA-256, and
reporting records whose files vanished.
"""

from __future__ import annotations

import importlib
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import attrs

from corral.errors import NotFound
from corral.records import ComponentKind, Provenance

if TYPE_CHECKING:
    from corral.library import Library, ScanEntry

#: ``corral scan --<layout>`` -> module describing that store.
LAYOUTS = {
    "hf-cache": "corral.adopt.hf_cache",
    "ollama": "corral.adopt.ollama",
    "lmstudio": "corral.adopt.lmstudio",
}


@attrs.frozen
class Found:
    """A model that a store layout points at, with what the store knows about it.

    ``path`` is what the record keeps (a Hugging Face snapshot's link, not the blob it points to);
    ``components`` are parts the store names (Ollama's projector layer); ``settings`` are load settings
    the store keeps for it (Ollama's parameters layer, already mapped to Corral's names and types);
    ``loras`` are adapter files it applies (Ollama's adapter layers); ``sha256`` is the hash a
    content-addressed store promises; ``problem`` marks a broken entry (a manifest naming a missing blob).
    """

    path: Path
    name: str | None = None
    provenance: Provenance | None = None
    components: tuple[tuple[ComponentKind, Path], ...] = ()
    settings: Mapping[str, Any] = attrs.field(factory=dict)
    loras: tuple[Path, ...] = ()
    sha256: str | None = None
    problem: str | None = None


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


def layout_module(layout: str):
    if layout not in LAYOUTS:
        raise NotFound(f"unknown store layout {layout!r}; known: {', '.join(LAYOUTS)}")
    return importlib.import_module(LAYOUTS[layout])


def default_root(layout: str) -> Path:
    """Where the tool behind ``layout`` keeps its models: the first of its usual places that exists."""
    module = layout_module(layout)
    roots = module.default_roots()
    for root in roots:
        if root.is_dir():
            return root
    where = " or ".join(str(r) for r in roots)
    raise NotFound(f"no {module.LABEL} folder at {where}; pass the folder: corral scan DIR --{layout}")


def scan(
    library: "Library",
    root: Path | None,
    *,
    layout: str | None = None,
    dry_run: bool = False,
    allow_unsafe: bool = False,
) -> list["ScanEntry"]:
    """Adopt what ``root`` holds (a plain folder, or the store named by ``layout``) in place."""
    from corral.adopt.engine import adopt

    if root is None:
        if layout is None:
            raise NotFound("give a folder to scan, or one of --hf-cache, --ollama, --lmstudio")
        root = default_root(layout)
    root = Path(root).expanduser()
    if not root.is_dir():
        raise NotFound(f"{root}: not a directory")
    if layout is None:
        from corral.detect import iter_candidates

        found = (Found(p) for p in iter_candidates(root.resolve()))
    else:
        found = layout_module(layout).find(root)
    return adopt(library, root, found, dry_run=dry_run, allow_unsafe=allow_unsafe)
