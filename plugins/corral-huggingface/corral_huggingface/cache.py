"""The Hugging Face cache, as huggingface_hub lays it out, read and written the same way.

``{cache}/models--org--name/blobs/{etag}`` holds each file once (the etag is the sha256 of an LFS file,
the git blob id of a small one); ``snapshots/{commit}/{name}`` shows it under its repository name;
``refs/{branch}`` names the commit a branch pointed at. Files downloaded by other tools are reused, and
huggingface_hub (transformers, diffusers, ``hf``) reuses what Corral downloads.

Snapshot entries are relative symlinks to their blobs, exactly as huggingface_hub makes them, so its
cache tools (``hf cache scan``, ``hf cache delete``) see Corral's downloads as their own. Where symlinks
are not possible the entry becomes a hard link, or a copy.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from corral.api import NotFound
from corral.api import RemoteFile, Snapshot

COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")


def cache_dir() -> Path:
    """HF_HUB_CACHE, else HF_HOME/hub, else huggingface_hub's default; read now, not at import."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE).expanduser()


def repo_dir(repo: str) -> Path:
    from huggingface_hub.file_download import repo_folder_name

    return cache_dir() / repo_folder_name(repo_id=repo, repo_type="model")


def pointer(repo: str, commit: str, name: str) -> Path:
    return repo_dir(repo) / "snapshots" / commit / Path(*name.split("/"))


def blob(repo: str, etag: str) -> Path:
    return repo_dir(repo) / "blobs" / etag


def remember_ref(repo: str, revision: str | None, commit: str | None) -> None:
    """Write ``refs/{revision}`` = commit, as huggingface_hub does for a branch or tag."""
    if not revision or not commit or revision == commit:
        return
    ref = repo_dir(repo) / "refs" / revision
    try:
        if ref.is_file() and ref.read_text() == commit:
            return
        ref.parent.mkdir(parents=True, exist_ok=True)
        ref.write_text(commit)
    except OSError:
        pass  # a read-only cache still serves files; the ref only saves a lookup next time


def resolve_commit(repo: str, revision: str | None) -> str | None:
    revision = revision or "main"
    if COMMIT_RE.match(revision):
        return revision
    ref = repo_dir(repo) / "refs" / revision
    try:
        return ref.read_text().strip() or None
    except OSError:
        return None


def offline_snapshot(repo: str, revision: str | None, url: str | None) -> Snapshot:
    """The files of ``repo`` at ``revision`` that the cache holds, without asking the hub."""
    commit = resolve_commit(repo, revision)
    folder = repo_dir(repo) / "snapshots" / (commit or "")
    if commit is None or not folder.is_dir():
        raise NotFound(
            f"offline: {repo}@{revision or 'main'} is not in the Hugging Face cache ({cache_dir()}); "
            f"go online, or drop --offline / HF_HUB_OFFLINE"
        )
    files = []
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            files.append(RemoteFile(name=path.relative_to(folder).as_posix(), size=path.stat().st_size))
    return Snapshot(source="huggingface", repo=repo, revision=revision or "main", commit=commit,
                    files=tuple(files), url=url)  # fmt: skip


def link(blob_path: Path, entry: Path) -> None:
    """Show ``blob_path`` at ``entry`` as huggingface_hub does: a relative symlink (else a hard link or copy)."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    if entry.is_symlink() or entry.exists():
        return
    try:
        os.symlink(os.path.relpath(blob_path, entry.parent), entry)
        return
    except OSError:
        pass
    try:
        os.link(blob_path, entry)
    except OSError:
        import shutil

        shutil.copyfile(blob_path, entry)
