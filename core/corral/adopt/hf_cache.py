"""The Hugging Face cache: ``models--org--name/snapshots/<revision>/…``, files linking into ``blobs/``.

Adoption reads the layout directly (it needs nothing but the folder names and the small ``refs/`` files,
so the core does not depend on huggingface_hub for it) and records each snapshot's model through its
link, never the blob: the name stays meaningful and the revision stays known. Scanning the cache's
sizes and deleting revisions go through huggingface_hub's own ``scan_cache_dir`` and
``delete_revisions(...).execute()``, which know which blobs another revision still uses.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import attrs

from corral.adopt import is_projector, unit_names
from corral.ext.layout import Found
from corral.detect.candidates import MODEL_SUFFIXES, UNIT_MARKERS
from corral.errors import Conflict, NotFound, PluginMissing
from corral.records import Provenance

HUB = "huggingface"
#: A ref file holds one commit hash; anything longer is not a ref.
_MAX_REF = 256


def default_roots() -> list[Path]:
    """Where huggingface_hub keeps its cache: HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub."""
    env = os.environ
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if env.get(var):
            return [Path(env[var]).expanduser()]
    home = env.get("HF_HOME") or os.path.join(env.get("XDG_CACHE_HOME") or "~/.cache", "huggingface")
    return [Path(home).expanduser() / "hub"]


def repo_id(folder_name: str) -> str:
    """``models--org--name`` -> ``org/name``."""
    return folder_name.split("--", 1)[1].replace("--", "/")


def _refs(repo_dir: Path) -> dict[str, list[str]]:
    """revision -> the refs (``main``, ``refs/pr/1``) that point at it."""
    out: dict[str, list[str]] = {}
    refs = repo_dir / "refs"
    if not refs.is_dir():
        return out
    for path in sorted(refs.rglob("*")):
        try:
            if not path.is_file() or path.stat().st_size > _MAX_REF:
                continue
            rev = path.read_text(errors="replace").strip()
        except OSError:
            continue
        out.setdefault(rev, []).append(path.relative_to(refs).as_posix())
    return out


def _unit_dir(names: set[str]) -> bool:
    if not any(m in names for m in UNIT_MARKERS):
        return False
    suffixes = {os.path.splitext(n)[1].lower() for n in names}
    # A GGUF repo often ships the original config.json; that makes it a set of GGUFs, not one HF model.
    return "model_index.json" in names or not (".gguf" in suffixes and not suffixes & (MODEL_SUFFIXES - {".gguf"}))


def _units(directory: Path) -> Iterator[Path]:
    """Model folders and model files in a snapshot, links kept as links; later split parts skipped."""
    from corral.detect.gguf import split_info

    try:
        with os.scandir(directory) as it:
            entries = sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)
    except OSError:
        return
    if _unit_dir({e.name for e in entries}):
        yield directory
        return
    for e in entries:
        path = directory / e.name
        if e.is_dir(follow_symlinks=False):
            yield from _units(path)
        elif os.path.splitext(e.name)[1].lower() in MODEL_SUFFIXES:
            split = split_info(path)
            if split is None or split[1] == 1:
                yield path


def _revisions(repo_dir: Path, refs: dict[str, list[str]]) -> list[Path]:
    """Snapshot folders, the one ``main`` points at first, then other referenced ones, then the rest."""
    snapshots = repo_dir / "snapshots"
    try:
        revs = [p for p in snapshots.iterdir() if p.is_dir()]
    except OSError:
        return []

    def order(p: Path):
        names = refs.get(p.name, [])
        return ("main" not in names, not names, -p.stat().st_mtime, p.name)

    return sorted(revs, key=order)


def find(root: Path) -> Iterator[Found]:
    """Every model in every cached model repository (datasets and spaces are not models)."""
    root = Path(os.path.realpath(root))
    for repo_dir in sorted(root.glob("models--*")):
        if not repo_dir.is_dir():
            continue
        repo = repo_id(repo_dir.name)
        refs = _refs(repo_dir)
        for i, rev_dir in enumerate(_revisions(repo_dir, refs)):
            rev = rev_dir.name
            label = repo if i == 0 else f"{repo}@{rev[:7]}"
            units = list(_units(rev_dir))
            names = unit_names(label, rev_dir, units)
            for path in units:
                files = () if path == rev_dir else (os.path.relpath(path, rev_dir),)
                provenance = Provenance(hub=HUB, repo=repo, revision=rev, files=files,
                                        url=f"https://huggingface.co/{repo}")
                yield Found(path, names.get(path) if not is_projector(path) else None, provenance)


# --- the cache as huggingface_hub sees it: sizes, revisions, deletion ---------------------------------


@attrs.frozen
class CachedRevision:
    """One cached revision of a repository, with the library records that use its files."""

    repo: str
    repo_type: str
    revision: str
    refs: tuple[str, ...]
    size: int
    files: int
    snapshot: Path
    last_modified: float
    used_by: tuple[str, ...] = ()


@attrs.frozen
class CacheDeletion:
    """What deleting revisions does: what goes, what it frees, which records go with it."""

    revisions: tuple[CachedRevision, ...]
    frees: int
    records: tuple[str, ...]
    executed: bool = False


def scan_cache(root: Path | None = None):
    """huggingface_hub's ``scan_cache_dir`` of ``root`` (default: its own cache folder)."""
    try:
        from huggingface_hub import scan_cache_dir
        from huggingface_hub.errors import CacheNotFound
    except ImportError:
        raise PluginMissing(
            "reading the Hugging Face cache needs huggingface_hub: pip install huggingface_hub",
            distribution="huggingface_hub",
        ) from None
    root = Path(root).expanduser() if root is not None else default_roots()[0]
    try:
        return scan_cache_dir(root)
    except CacheNotFound:
        raise NotFound(f"no Hugging Face cache at {root}; pass the folder with --dir") from None
    except ValueError as exc:
        raise NotFound(f"{root}: {exc}") from None


def _users(models, snapshot: Path) -> tuple[str, ...]:
    prefix = os.path.realpath(snapshot) + os.sep
    return tuple(
        m.name for m in models
        if any((os.path.abspath(p) + os.sep).startswith(prefix) for p in (m.path, *m.paths, *m.copies))
    )  # fmt: skip


def cached_revisions(library, info) -> list[CachedRevision]:
    """Every revision in a cache scan, largest first, with the library records using it."""
    models = library.store.list_models()
    out = [
        CachedRevision(
            repo=repo.repo_id, repo_type=repo.repo_type, revision=rev.commit_hash, refs=tuple(sorted(rev.refs)),
            size=rev.size_on_disk, files=len(rev.files), snapshot=rev.snapshot_path,
            last_modified=rev.last_modified, used_by=_users(models, rev.snapshot_path),
        )
        for repo in info.repos for rev in repo.revisions
    ]  # fmt: skip
    return sorted(out, key=lambda r: (-r.size, r.repo, r.revision))


def _choose(revisions: list[CachedRevision], wanted: list[str]) -> list[CachedRevision]:
    """Revisions named by hash, unique hash prefix (7+ characters) or repository id (all its revisions)."""
    chosen: dict[str, CachedRevision] = {}
    for ref in wanted:
        hits = [r for r in revisions if r.repo == ref] or [
            r for r in revisions if len(ref) >= 7 and r.revision.startswith(ref.lower())
        ]
        if not hits:
            raise NotFound(f"no cached revision or repository {ref!r}; see `corral clean hf-cache --scan`")
        if len({r.revision for r in hits}) > 1 and hits[0].repo != ref:
            raise Conflict(f"{ref!r} matches {len(hits)} revisions; give more of the hash")
        chosen.update((r.revision, r) for r in hits)
    return list(chosen.values())


def plan_deletion(library, info, wanted: list[str]) -> tuple[CacheDeletion, object]:
    """What deleting ``wanted`` would do, and huggingface_hub's strategy that does it (not executed)."""
    chosen = _choose(cached_revisions(library, info), wanted)
    loaded = library.store.loaded_ids()
    names = {m.name for m in library.store.list_models() if m.id in loaded}
    busy = sorted({u for r in chosen for u in r.used_by if u in names})
    if busy:
        raise Conflict(f"{', '.join(busy)} is loaded from these files; unload it first (`corral unload`)")
    strategy = info.delete_revisions(*(r.revision for r in chosen))
    records = tuple(sorted({u for r in chosen for u in r.used_by}))
    return CacheDeletion(tuple(chosen), strategy.expected_freed_size, records), strategy


def execute_deletion(library, plan: CacheDeletion, strategy) -> CacheDeletion:
    """Run huggingface_hub's strategy, then forget the records whose files went with it (a record with a
    surviving copy elsewhere keeps that copy as its path)."""
    strategy.execute()
    store = library.store
    for name in plan.records:
        try:
            model = store.get_model(name)
        except NotFound:
            continue
        places = [p for p in (model.path, *model.copies) if os.path.exists(p)]
        if not os.path.exists(model.path) and places and not model.path.is_dir() and len(model.paths) <= 1:
            store.update_model(attrs.evolve(model, path=places[0], paths=(places[0],), copies=tuple(places[1:])),
                               touch=False)
        elif not os.path.exists(model.path):
            try:
                library.remove(model.id)  # the record, its LoRA records and its manifest
            except Conflict:  # loaded since the plan was made: keep the record, flagged
                store.update_model(attrs.evolve(model, missing=True), touch=False)
    return attrs.evolve(plan, executed=True)
