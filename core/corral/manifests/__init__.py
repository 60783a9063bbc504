"""Manifests: one JSON document per model, beside the library (``CORRAL_HOME/manifests/<id>.json``).

A manifest says where a model came from (hub, repo, revision), which files it is made of (size, SHA-256
when known), its quantization, its components, the LoRAs bound to it and whether any were fused in, and
what it takes on disk. It is regenerated on demand (``corral manifest sync``) and never read back as the
truth about the model: the library record is. Hashes computed here are saved into the record too.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable

import attrs

from corral.convert import to_data
from corral.manifests.files import (
    DiskTally,
    FileUsage,
    locations,
    missing_paths,
    sha256_file,
    store_sha256,
)
from corral.records import Model, utcnow

MANIFEST_VERSION = 1
#: ``--fast`` hashes only files up to this size (64 MiB): configs, tokenizers, projectors, small LoRAs.
FAST_HASH_LIMIT = 64 * 1024**2


@attrs.frozen
class SyncResult:
    """What ``manifest sync`` did for one model."""

    model: str
    path: Path
    files: int
    hashed: int
    skipped: int
    problems: tuple[str, ...] = ()


def manifests_dir(home: Path) -> Path:
    return Path(home) / "manifests"


def manifest_path(home: Path, model_id: str) -> Path:
    return manifests_dir(home) / f"{model_id}.json"


def read_manifest(home: Path, model_id: str) -> dict | None:
    """The saved manifest of a model, or None when it was never synced (or is unreadable)."""
    try:
        data = json.loads(manifest_path(home, model_id).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def remove_manifest(home: Path, model_id: str) -> None:
    try:
        manifest_path(home, model_id).unlink()
    except FileNotFoundError:
        pass


def _previous_hashes(previous: dict | None) -> dict[tuple[str, int, int], str]:
    """(path, size, mtime_ns) -> sha256 from the last manifest: an unchanged file is not hashed again."""
    out = {}
    for f in (previous or {}).get("files", ()):
        if isinstance(f, dict) and f.get("sha256") and f.get("mtime_ns") is not None:
            out[(f.get("path"), f.get("size"), f.get("mtime_ns"))] = f["sha256"]
    return out


def _file_entry(path: Path, role: str, known: dict, fast: bool, record_sha: str | None) -> dict[str, Any]:
    entry: dict[str, Any] = {"path": str(path), "role": role, "exists": os.path.exists(path)}
    if not entry["exists"] or os.path.isdir(path):
        entry["kind"] = "directory" if entry["exists"] else "missing"
        return entry
    st = os.stat(path)
    entry.update(size=st.st_size, mtime_ns=st.st_mtime_ns, sha256=None, sha256_source=None)
    promised = store_sha256(path)
    cached = known.get((str(path), st.st_size, st.st_mtime_ns))
    if cached:
        entry.update(sha256=cached, sha256_source="unchanged since last sync")
    elif fast and promised:
        entry.update(sha256=promised, sha256_source="store name")
    elif fast and record_sha:
        entry.update(sha256=record_sha, sha256_source="library record")
    elif fast and st.st_size > FAST_HASH_LIMIT:
        entry["sha256_source"] = f"not hashed (--fast skips files over {FAST_HASH_LIMIT // 1024**2} MiB)"
    else:
        entry.update(sha256=sha256_file(path), sha256_source="computed")
        if promised and promised != entry["sha256"]:
            entry["problem"] = f"content does not match its store name (sha256 {promised[:12]}…); re-download it"
    return entry


def _fusion(model: Model, bound: list) -> dict[str, Any]:
    """LoRA fusion state: adapters merged into the weights (an exporter writes ``fused_loras`` into the
    facts) versus adapters bound and applied at load time."""
    fused = model.facts.extra.get("fused_loras") or []
    if fused:
        state = "fused"
    elif bound:
        state = "unfused"
    else:
        state = "none"
    return {
        "state": state,
        "fused": list(fused),
        "unfused": [{"id": l.id, "name": l.name, "path": str(l.path), "weight": l.weight} for l in bound],
    }


def build_manifest(library, model: Model, *, fast: bool = False, previous: dict | None = None,
                   usage: FileUsage | None = None) -> dict[str, Any]:
    """The manifest of ``model`` (hashing files as ``fast`` allows); nothing is written."""
    loras = library.store.list_loras(model.id)
    known = _previous_hashes(previous)
    files = []
    for loc in locations(model, loras):
        record_sha = None
        if loc.role in ("weights", "copy") and len(model.paths) <= 1:
            record_sha = model.sha256
        elif loc.role.startswith("component:"):
            record_sha = next((c.sha256 for c in model.components if c.path == loc.path), None)
        files.append(_file_entry(loc.path, loc.role, known, fast, record_sha))
    tally = DiskTally()  # by inode: a hard link, or a copy that is one, counts once
    for f in files:
        if f.get("size") is not None:
            tally.add(Path(f["path"]))
    shared = sorted(
        {u for f in files if f["exists"] for u in (usage.users(Path(f["path"])) if usage else ())}
        - {model.name} - {f"LoRA {l.name}" for l in loras}
    )
    hashed = [f for f in files if f.get("sha256")]
    hashes = {f["path"]: f["sha256"] for f in hashed}
    hashable = [f for f in files if f.get("size") is not None]
    return {
        "manifest_version": MANIFEST_VERSION,
        "generated": utcnow().isoformat(),
        "id": model.id,
        "name": model.name,
        "category": str(model.category),
        "format": str(model.format),
        "path": str(model.path),
        "provenance": to_data(model.provenance),
        "quantization": model.facts.quantization or model.facts.dtype,
        "architecture": model.facts.architecture,
        "parameters": model.facts.parameters,
        "files": files,
        "hashed": f"{len(hashed)}/{len(hashable)}",
        "components": [
            {"kind": str(c.kind), "path": str(c.path), "size": c.size, "sha256": hashes.get(str(c.path), c.sha256)}
            for c in model.components
        ],
        "lora_fusion": _fusion(model, loras),
        "disk_usage": {"bytes": tally.bytes, "files": tally.files, "shared_with": shared},
        "missing": [str(p) for p in missing_paths(model)],
    }


def _save_hashes(library, model: Model, manifest: dict) -> Model:
    """Put computed SHA-256s back into the record: the model's (single-file models) and components'."""
    by_path = {f["path"]: f["sha256"] for f in manifest["files"] if f.get("sha256") and f.get("sha256_source")
               in ("computed", "unchanged since last sync")}
    changes: dict[str, Any] = {}
    if len(model.paths) <= 1 and str(model.path) in by_path and model.sha256 != by_path[str(model.path)]:
        changes["sha256"] = by_path[str(model.path)]
    components = tuple(
        attrs.evolve(c, sha256=by_path[str(c.path)]) if by_path.get(str(c.path), c.sha256) != c.sha256 else c
        for c in model.components
    )
    if components != model.components:
        changes["components"] = components
    if not changes:
        return model
    return library.store.update_model(attrs.evolve(model, **changes), touch=False)


def manifests_tally(manifests: Iterable[dict]) -> DiskTally:
    """What the files of ``manifests`` take on disk together, each file once (by inode, as it is now)."""
    tally = DiskTally()
    for manifest in manifests:
        for f in manifest.get("files") or ():
            if isinstance(f, dict) and f.get("size") is not None and f.get("path"):
                tally.add(Path(f["path"]))
    return tally


def write_manifest(home: Path, manifest: dict) -> Path:
    """Write atomically: a reader never sees half a manifest."""
    path = manifest_path(home, manifest["id"])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".json.tmp{os.getpid()}")
    tmp.write_text(json.dumps(manifest, ensure_ascii=False, indent=2))
    os.replace(tmp, path)
    return path


def library_home(library) -> Path:
    """The data directory a library lives in (manifests go beside its database)."""
    return Path(library.store.path).parent


def sync(library, refs: Iterable[str] = (), *, fast: bool = False) -> list[SyncResult]:
    """Regenerate the manifests of the models named by ``refs`` (all when empty); with every model, also
    remove manifests of models no longer in the library."""
    home = library_home(library)
    refs = list(refs)
    store = library.store
    everything = store.list_models()
    models = [store.get_model(r) for r in refs] if refs else everything
    usage = FileUsage(everything, store.list_loras())
    results = []
    for model in models:
        manifest = build_manifest(library, model, fast=fast, previous=read_manifest(home, model.id), usage=usage)
        _save_hashes(library, model, manifest)
        path = write_manifest(home, manifest)
        problems = [f"{f['path']}: {f['problem']}" for f in manifest["files"] if f.get("problem")]
        problems += [f"{p}: missing" for p in manifest["missing"]]
        files = [f for f in manifest["files"] if f.get("size") is not None]
        results.append(SyncResult(
            model=model.name, path=path, files=len(files), hashed=sum(bool(f.get("sha256")) for f in files),
            skipped=sum(not f.get("sha256") for f in files), problems=tuple(problems),
        ))
    if not refs:
        ids = {m.id for m in everything}
        for stale in manifests_dir(home).glob("*.json"):
            if stale.stem not in ids:
                stale.unlink(missing_ok=True)
    return results
