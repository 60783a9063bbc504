"""What ``corral scan DIR`` looks at: model files, and model directories taken as single units."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

#: Loose files worth detecting; everything else under a scanned tree is ignored without being opened.
MODEL_SUFFIXES = frozenset({".gguf", ".safetensors", ".bin", ".pth", ".pt", ".ckpt", ".onnx"})
#: A directory holding one of these is one model (or adapter): Hugging Face, diffusers, PEFT, Kokoro.
UNIT_MARKERS = ("model_index.json", "config.json", "adapter_config.json")


def _is_split_tail(name: str) -> bool:
    from corral.detect.gguf import split_info

    info = split_info(Path(name))
    return info is not None and info[1] != 1


def _unit_dir(names: set[str], files: list[str]) -> bool:
    if "model_index.json" in names:
        return True
    if not any(m in names for m in UNIT_MARKERS):
        return False
    # GGUF repos on the Hub often ship the original config.json beside the quantised files; such a
    # folder is a set of GGUF models, not one Hugging Face model, unless other weights are there too.
    suffixes = {Path(f).suffix.lower() for f in files}
    return not (".gguf" in suffixes and not (suffixes & (MODEL_SUFFIXES - {".gguf"})))


def iter_candidates(root: Path) -> Iterator[Path]:
    """Every path under ``root`` that detection should look at, resolved, in sorted order.

    Directories holding ``config.json``, ``model_index.json`` or ``adapter_config.json`` (which covers
    Kokoro's config.json + .pth + voices/ layout) are yielded whole and not descended into; elsewhere,
    files with a model suffix (:data:`MODEL_SUFFIXES`) are yielded, split GGUFs by their first part
    only. Hidden files and directories are skipped; symlinked directories are followed once.
    """
    root = Path(root).expanduser().resolve()
    if root.is_file():
        if root.suffix.lower() in MODEL_SUFFIXES:
            yield root
        return
    yield from _walk(root, set())


def _walk(directory: Path, seen: set[Path]) -> Iterator[Path]:
    real = directory.resolve()
    if real in seen:  # a symlink loop, or the same folder reached twice
        return
    seen.add(real)
    try:
        with os.scandir(directory) as it:
            entries = sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)
    except OSError:
        return  # unreadable folders are skipped, as `find` would
    files = [e.name for e in entries if e.is_file()]
    if _unit_dir({e.name for e in entries}, files):
        yield real
        return
    for entry in entries:
        try:
            if entry.is_dir():
                yield from _walk(Path(entry.path), seen)
            elif entry.is_file():
                suffix = os.path.splitext(entry.name)[1].lower()
                if suffix in MODEL_SUFFIXES and not (suffix == ".gguf" and _is_split_tail(entry.name)):
                    yield Path(entry.path).resolve()
        except OSError:
            continue
