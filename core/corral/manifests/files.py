"""The files a library record stands for, who else uses them, and their SHA-256.

Shared by manifests (what a model is made of, what it takes on disk) and cleanup (what may be deleted):
a file is identified by its real path, so a symlink and its target count as one file.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Iterable, Iterator

import attrs

from corral.records import Lora, Model

#: Bytes read per step while hashing: large enough to be fast, small enough to keep memory flat.
HASH_CHUNK = 4 * 1024**2
#: Content-addressed names: Ollama's ``blobs/sha256-<hex>`` and the Hugging Face cache's LFS blobs.
_OLLAMA_BLOB = re.compile(r"^sha256[-:]([0-9a-f]{64})$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


@attrs.frozen
class Location:
    """One file (or model directory) of a record, with the part it plays.

    ``role`` is "weights", "copy", "component:<kind>" or "lora:<name>".
    """

    path: Path
    role: str


def sha256_file(path: Path) -> str:
    """The SHA-256 of a file's content, read in chunks (models are many gigabytes)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def store_sha256(path: Path) -> str | None:
    """The SHA-256 that a content-addressed store's file name promises, or None.

    Ollama names blobs ``sha256-<hex>``; the Hugging Face cache names LFS blobs by their SHA-256 (small
    git files by a 40-digit SHA-1, which is no use here). The name is a promise, not a proof:
    ``corral manifest sync`` without ``--fast`` hashes the content and reports a mismatch.
    """
    path = Path(path)
    name = path.name
    if m := _OLLAMA_BLOB.match(name):
        return m.group(1)
    try:
        real = Path(os.path.realpath(path))
    except OSError:
        return None
    if real.parent.name == "blobs" and _HEX64.match(real.name):
        return real.name
    if m := _OLLAMA_BLOB.match(real.name):
        return m.group(1)
    return None


def locations(model: Model, loras: Iterable[Lora] = ()) -> list[Location]:
    """Every file of ``model``: weights (or the model directory), copies, components, bound LoRAs."""
    out: list[Location] = []
    seen: set[Path] = set()

    def add(path: Path, role: str) -> None:
        if path not in seen:
            seen.add(path)
            out.append(Location(Path(path), role))

    weights = list(model.paths) or [model.path]
    if model.path not in weights and not model.path.is_dir():
        weights.insert(0, model.path)
    for p in weights:
        add(p, "weights")
    for p in model.copies:
        add(p, "copy")
    for c in model.components:
        add(c.path, f"component:{c.kind}")
    for lora in loras:
        add(lora.path, f"lora:{lora.name}")
    return out


def missing_paths(model: Model) -> list[Path]:
    """The record's own files that are gone (copies and components not counted; a broken link counts)."""
    return [p for p in dict.fromkeys([model.path, *model.paths]) if not os.path.exists(p)]


def realpath(path: Path) -> str:
    return os.path.realpath(path)


def _inside(child: str, parent: str) -> bool:
    return child == parent or child.startswith(parent.rstrip(os.sep) + os.sep)


class FileUsage:
    """Which records use which real paths, so a file shared between records is never deleted."""

    def __init__(self, models: Iterable[Model], loras: Iterable[Lora]) -> None:
        self.files: dict[str, set[str]] = {}
        self.dirs: dict[str, set[str]] = {}
        for model in models:
            for loc in locations(model):
                self._add(loc.path, model.name)
            if model.path.is_dir():
                self.dirs.setdefault(realpath(model.path), set()).add(model.name)
        for lora in loras:
            self._add(lora.path, f"LoRA {lora.name}")

    def _add(self, path: Path, user: str) -> None:
        self.files.setdefault(realpath(path), set()).add(user)

    def users(self, path: Path, *, tree: bool = False) -> set[str]:
        """Records using ``path``: the file itself, a model folder holding it, or (``tree``) any file
        or model folder inside it."""
        real = realpath(path)
        found = set(self.files.get(real, ()))
        for d, names in self.dirs.items():
            if _inside(real, d):
                found |= names
        if tree:
            for f, names in self.files.items():
                if _inside(f, real):
                    found |= names
            for d, names in self.dirs.items():
                if _inside(d, real):
                    found |= names
        return found


def tree_files(directory: Path) -> Iterator[Path]:
    """Regular files and links under ``directory``, links not followed."""
    for parent, dirs, files in os.walk(directory, followlinks=False):
        for name in files:
            yield Path(parent) / name
        for name in dirs:
            if os.path.islink(os.path.join(parent, name)):
                yield Path(parent) / name


def disk_size(path: Path) -> int:
    """Bytes that deleting ``path`` gives back: a link frees nothing, a folder frees its files."""
    try:
        if os.path.islink(path):
            return 0
        if os.path.isdir(path):
            return sum(os.lstat(f).st_size for f in tree_files(path) if not os.path.islink(f))
        return os.lstat(path).st_size
    except OSError:
        return 0


def managed_store(path: Path) -> str | None:
    """Why ``path`` belongs to another tool's store that its own tool must change, or None.

    Files in the Hugging Face cache are removed revision by revision (``corral clean hf-cache``);
    Ollama blobs are shared between tags and listed in Ollama's manifests (``ollama rm``).
    """
    parts = Path(path).parts
    for i, part in enumerate(parts[:-2]):
        if part.startswith("models--") and parts[i + 1] == "snapshots":
            rev = parts[i + 2]
            return f"in the Hugging Face cache (revision {rev[:12]}): use `corral clean hf-cache --delete {rev}`"
    p = Path(path)
    if _OLLAMA_BLOB.match(p.name) and p.parent.name == "blobs" and (p.parent.parent / "manifests").is_dir():
        return "in Ollama's store (blobs are shared between tags): use `ollama rm NAME:TAG`"
    return None
