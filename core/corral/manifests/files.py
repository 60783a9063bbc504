"""The files a library record stands for, who else uses them, and their SHA-256.

Shared by manifests (what a model is made of, what it takes on disk), cleanup (what may be deleted) and
``corral ls`` (the library's total): a file is identified by its inode (``st_dev``, ``st_ino``) as well as
its real path, so a symlink and its target, two hard links, or one file under two records count once.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
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


def with_missing(model: Model) -> Model:
    """``model`` with ``missing`` telling whether its files are on disk now (nothing is saved)."""
    missing = bool(missing_paths(model))
    return model if missing == model.missing else attrs.evolve(model, missing=missing)


def realpath(path: Path) -> str:
    return os.path.realpath(path)


def inode(path: Path, *, follow: bool = True) -> tuple[int, int] | None:
    """The file ``path`` is, as (st_dev, st_ino), or None when it is gone: two names with one inode are
    one file on disk (a hard link, or a symlink when ``follow``)."""
    try:
        st = os.stat(path) if follow else os.lstat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


class DiskTally:
    """Bytes on disk counted by inode, the one way Corral adds up file sizes (``clean preview``,
    ``manifest show``, ``corral ls``): a file reached under several names counts once.

    With ``follow`` (the default) a symlink counts as the file it points to: what a model takes on disk.
    Without it a symlink counts nothing: what deleting it gives back. :meth:`freed` is the part that
    deleting every name added would give back: a file with hard links outside them frees nothing.
    """

    def __init__(self, *, follow: bool = True) -> None:
        self.follow = follow
        self._sizes: dict[tuple[int, int], int] = {}
        self._links: dict[tuple[int, int], int] = {}
        self._names: dict[tuple[int, int], set[str]] = {}

    def _each(self, path: Path) -> Iterator[tuple[str, os.stat_result]]:
        if not self.follow and os.path.islink(path):
            return
        if os.path.isdir(path):
            files: Iterable[Path] = tree_files(Path(path))
        else:
            files = (Path(path),)
        for f in files:
            try:
                st = os.stat(f) if self.follow else os.lstat(f)
            except OSError:  # gone, or a link to nothing
                continue
            if stat.S_ISREG(st.st_mode):
                yield os.path.abspath(f), st

    def add(self, path: Path) -> int:
        """Count ``path`` (a file, or every file under a folder); returns the bytes not counted before."""
        added = 0
        for name, st in self._each(path):
            key = (st.st_dev, st.st_ino)
            self._names.setdefault(key, set()).add(name)
            if key not in self._sizes:
                self._sizes[key] = st.st_size
                self._links[key] = st.st_nlink
                added += st.st_size
        return added

    def update(self, other: "DiskTally") -> None:
        """Count what ``other`` counted too."""
        for key, size in other._sizes.items():
            self._sizes.setdefault(key, size)
            self._links.setdefault(key, other._links[key])
            self._names.setdefault(key, set()).update(other._names[key])

    @property
    def bytes(self) -> int:
        return sum(self._sizes.values())

    @property
    def files(self) -> int:
        return len(self._sizes)

    def sizes(self) -> dict[tuple[int, int], int]:
        """Each file counted, by inode, with its size."""
        return dict(self._sizes)

    def whole(self, key: tuple[int, int]) -> bool:
        """Whether every name (hard link) of the file ``key`` was counted: deleting them frees it."""
        return key in self._sizes and len(self._names[key]) >= self._links[key]

    def freed(self) -> int:
        """Bytes that deleting every name counted gives back (a file's other hard links keep its data)."""
        return sum(size for key, size in self._sizes.items() if self.whole(key))

    def kept_by_links(self, path: Path) -> int:
        """How many names of ``path``'s file lie outside what was counted (0 when none, or when gone)."""
        key = inode(path, follow=self.follow)
        if key is None or key not in self._sizes:
            return 0
        return max(0, self._links[key] - len(self._names[key]))


def library_tally(models: Iterable[Model], loras: Iterable[Lora] = ()) -> DiskTally:
    """What the records take on disk together: their weights (or model folders), components and LoRAs,
    each file once. Copies that ``scan`` found are not the library's and are not counted."""
    tally = DiskTally()
    for model in models:
        if model.path.is_dir():
            tally.add(model.path)
        for loc in locations(model):
            if loc.role != "copy":
                tally.add(loc.path)
    for lora in loras:
        tally.add(lora.path)
    return tally


def _inside(child: str, parent: str) -> bool:
    return child == parent or child.startswith(parent.rstrip(os.sep) + os.sep)


class FileUsage:
    """Which records use which files (by real path and by inode), so a file shared between records, or
    a hard link to one, is never deleted."""

    def __init__(self, models: Iterable[Model], loras: Iterable[Lora]) -> None:
        self.files: dict[str, set[str]] = {}
        self.dirs: dict[str, set[str]] = {}
        self.inodes: dict[tuple[int, int], set[str]] = {}
        for model in models:
            for loc in locations(model):
                self._add(loc.path, model.name)
            if model.path.is_dir():
                self.dirs.setdefault(realpath(model.path), set()).add(model.name)
        for lora in loras:
            self._add(lora.path, f"LoRA {lora.name}")

    def _add(self, path: Path, user: str) -> None:
        self.files.setdefault(realpath(path), set()).add(user)
        key = inode(path)
        if key is not None:
            self.inodes.setdefault(key, set()).add(user)

    def users(self, path: Path, *, tree: bool = False) -> set[str]:
        """Records using ``path``: the file itself, a model folder holding it, or (``tree``) any file
        or model folder inside it."""
        real = realpath(path)
        found = set(self.files.get(real, ()))
        key = inode(path)
        if key is not None and not os.path.isdir(path):  # a hard link to a file a record uses
            found |= self.inodes.get(key, set())
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
    """Bytes ``path`` holds itself: a link holds nothing, a folder its files (each inode once)."""
    tally = DiskTally(follow=False)
    tally.add(path)
    return tally.bytes


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
