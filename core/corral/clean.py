"""Cleanup: choose models by tag, quantization, category, age of last use or missing files, show what
deleting them frees, and delete them (files and records) only after that list was shown.

Only files the chosen records own go: their weights (or model folder), components and bound LoRAs.
Never deleted: a file another record still uses (a shared path, a hard link to it, a component, a LoRA
bound to a model that stays), the copies ``scan`` found of a model (recorded, never added), a loaded
model, and files inside another tool's store (the Hugging Face cache, Ollama), which are removed with
that store's own tool. What deleting frees is counted by inode: a file under two names counts once, and
one whose other hard links stay frees nothing.
"""

from __future__ import annotations

import os
import shutil
from datetime import datetime, timedelta
from pathlib import Path

import attrs

from corral.errors import ConfirmationNeeded, Conflict, CorralError, InvalidSetting
from corral.manifests.files import DiskTally, FileUsage, disk_size, locations, managed_store, missing_paths
from corral.records import Model, utcnow


@attrs.frozen
class Filters:
    """Which models to choose; every filter given must match."""

    tag: str | None = None
    quant: str | None = None
    unused_days: float | None = None
    category: str | None = None
    missing: bool = False

    def empty(self) -> bool:
        return not (self.tag or self.quant or self.unused_days is not None or self.category or self.missing)


@attrs.frozen
class CleanFile:
    """One file (or model folder) of a candidate and what cleanup does with it."""

    path: Path
    role: str
    #: bytes the file (or folder) holds itself; what deleting frees is the candidate's ``frees``.
    size: int
    #: "delete", or "keep" with ``reason`` (shared, a copy scan found, gone already); a "delete" may
    #: carry a reason too (hard links elsewhere keep its data).
    action: str
    reason: str | None = None


@attrs.frozen
class CleanCandidate:
    """A chosen model; ``blocked`` says why it stays whole (loaded, in another tool's store)."""

    id: str
    name: str
    category: str
    quantization: str | None
    last_used: datetime
    files: tuple[CleanFile, ...]
    frees: int
    blocked: str | None = None


@attrs.frozen
class CleanPlan:
    """What ``clean preview`` shows and ``clean apply`` carries out."""

    candidates: tuple[CleanCandidate, ...]
    frees: int
    filters: Filters = Filters()


@attrs.frozen
class CleanReport:
    """What ``clean apply`` did."""

    removed: tuple[str, ...]
    deleted: tuple[Path, ...]
    freed: int
    skipped: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()


def last_used(store, model: Model) -> datetime:
    """When the model was last loaded (its newest load measurement) or changed, whichever is later."""
    measured = [m.measured for m in store.measurements(model.id)]
    return max([model.updated, *measured])


def _matches(store, model: Model, filters: Filters, now: datetime) -> bool:
    if filters.category and str(model.category) != filters.category:
        return False
    if filters.tag and filters.tag.lower() not in {t.lower() for t in model.tags}:
        return False
    if filters.quant:
        quant = model.facts.quantization or model.facts.dtype or ""
        if quant.lower() != filters.quant.lower():
            return False
    if filters.unused_days is not None and last_used(store, model) > now - timedelta(days=filters.unused_days):
        return False
    if filters.missing and not missing_paths(model):
        return False
    return True


def plan_clean(library, filters: Filters, *, now: datetime | None = None) -> CleanPlan:
    """The models ``filters`` choose and the space deleting them frees; nothing is changed."""
    if filters.empty():
        raise InvalidSetting(
            "clean needs at least one filter (--tag, --quant, --unused-days, --category, --missing); "
            "it never chooses the whole library"
        )
    store = library.store
    now = now or utcnow()
    models = store.list_models()
    loras = store.list_loras()
    loaded = store.loaded_ids()
    chosen = [m for m in models if _matches(store, m, filters, now)]
    blocked: dict[str, str] = {}
    for m in chosen:
        if m.id in loaded:
            blocked[m.id] = "loaded; unload it first (`corral unload`)"
            continue
        managed = next((r for loc in locations(m) if (r := managed_store(loc.path))), None)
        if managed:
            blocked[m.id] = managed
    going = {m.id for m in chosen if m.id not in blocked}
    # Everyone who stays: other models, blocked candidates, LoRAs bound to models that stay.
    usage = FileUsage([m for m in models if m.id not in going], [l for l in loras if l.base_id not in going])
    everything = DiskTally(follow=False)  # every name the plan deletes: a file under two counts once
    listed = []
    for m in chosen:
        files = () if m.id in blocked else tuple(_files(m, [l for l in loras if l.base_id == m.id], usage))
        own = DiskTally(follow=False)
        for f in files:
            if f.action == "delete":
                own.add(f.path)
                everything.add(f.path)
        listed.append((m, files, own))
    candidates, credited = [], set()
    for m, files, own in listed:
        # A file is freed when the plan deletes all its names; the first candidate listing it is credited.
        frees = 0
        for key, size in own.sizes().items():
            if everything.whole(key) and key not in credited:
                credited.add(key)
                frees += size
        candidates.append(CleanCandidate(
            id=m.id, name=m.name, category=str(m.category),
            quantization=m.facts.quantization or m.facts.dtype, last_used=last_used(store, m),
            files=tuple(_with_links(f, everything) for f in files), frees=frees, blocked=blocked.get(m.id),
        ))  # fmt: skip
    return CleanPlan(candidates=tuple(candidates), frees=everything.freed(), filters=filters)


def _with_links(f: CleanFile, tally: DiskTally) -> CleanFile:
    """``f``, saying so when hard links the plan keeps hold its data (deleting this name frees nothing)."""
    others = tally.kept_by_links(f.path) if f.action == "delete" and not os.path.isdir(f.path) else 0
    if not others:
        return f
    return attrs.evolve(f, reason=f"{others} other hard link(s) keep its data; deleting this name frees nothing")


def _inside(path: Path, folder: str) -> bool:
    return (os.path.realpath(path) + os.sep).startswith(folder)


def _files(model: Model, loras, usage: FileUsage) -> list[CleanFile]:
    out: list[CleanFile] = []
    copies = {str(c) for c in model.copies}
    if model.path.is_dir():
        inside = os.path.realpath(model.path) + os.sep
        users = usage.users(model.path, tree=True)
        if any(_inside(c, inside) for c in model.copies):
            users = users | {f"its copy in {model.path}"}
        if not users:
            # The folder is the model: config, tokenizer and weights go together.
            out.append(CleanFile(model.path, "model folder", disk_size(model.path), "delete"))
            locs = [l for l in locations(model, loras) if not _inside(l.path, inside)]
        else:
            locs = locations(model, loras)
    else:
        locs = locations(model, loras)
    for loc in locs:
        if loc.role == "copy" or str(loc.path) in copies:
            continue
        if not os.path.lexists(loc.path):
            out.append(CleanFile(loc.path, loc.role, 0, "keep", "already gone"))
            continue
        users = usage.users(loc.path)
        if users:
            out.append(CleanFile(loc.path, loc.role, 0, "keep", "also used by " + ", ".join(sorted(users))))
        elif os.path.isdir(loc.path):
            out.append(CleanFile(loc.path, loc.role, 0, "keep", "a folder; only files are deleted"))
        else:
            out.append(CleanFile(loc.path, loc.role, disk_size(loc.path), "delete"))
    # Copies scan found are other places of the same content, recorded but never added: not the record's.
    for copy in model.copies:
        out.append(CleanFile(Path(copy), "copy", 0, "keep", "a copy scan found; Corral never added it"))
    return out


def apply_clean(library, plan: CleanPlan) -> CleanReport:
    """Delete what ``plan`` lists: each record first (refused if it got loaded meanwhile), then its files.

    The plan is worked out again first, and only what both plans delete goes: a file some record started
    using, or a model loaded, since the list was shown stays.
    """
    shown = {(c.id, str(f.path)) for c in plan.candidates for f in c.files if f.action == "delete"}
    shown_ids = {c.id for c in plan.candidates if not c.blocked}
    removed, deleted, errors = [], [], []
    skipped = [f"{c.name}: {c.blocked}" for c in plan.candidates if c.blocked]
    gone = DiskTally(follow=False)
    for c in plan_clean(library, plan.filters).candidates:
        if c.id not in shown_ids:
            continue
        if c.blocked:
            skipped.append(f"{c.name}: {c.blocked}")
            continue
        try:
            library.remove(c.id)  # the record, its LoRAs and manifest; refuses a model a process holds loaded
        except Conflict as exc:
            skipped.append(f"{c.name}: {exc}")
            continue
        removed.append(c.name)
        for f in c.files:
            if f.action != "delete" or (c.id, str(f.path)) not in shown:
                continue
            this = DiskTally(follow=False)
            this.add(f.path)  # counted before it goes: its inode and links are known only while it is there
            try:
                if os.path.isdir(f.path) and not os.path.islink(f.path):
                    shutil.rmtree(f.path)
                else:
                    os.unlink(f.path)
            except FileNotFoundError:
                continue
            except OSError as exc:
                errors.append(f"{f.path}: {exc.strerror or exc}")
                continue
            deleted.append(f.path)
            gone.update(this)
    return CleanReport(tuple(removed), tuple(deleted), gone.freed(), tuple(skipped), tuple(errors))
