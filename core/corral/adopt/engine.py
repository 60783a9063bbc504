"""Adoption shared by every store layout: detect what a store holds, record it in place, recognise what
the library already has (by path, by real path, or by size + SHA-256), and report records under the
scanned folder whose files vanished.

Statuses in the result: ``added``, ``would-add`` (dry run), ``exists``, ``copy`` (the same file as a
model already recorded: one record, both paths), ``missing`` (files gone; the record is kept and
flagged), ``moved`` (the file is gone but a recorded copy remains: the copy becomes the model's path),
``component`` and ``lora`` (not models of their own; the message says where they fit), ``error``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

import attrs

from corral.ext.layout import Found
from corral.errors import Conflict, CorralError, NotFound
from corral.intake import ScanEntry, category_with, default_name, holding_folder, offer, with_component
from corral.manifests.files import inode, missing_paths, sha256_file, store_sha256
from corral.records import Component, Detection, Kind, Model, Provenance

if TYPE_CHECKING:
    from corral.library import Library


def _names(path: Path) -> tuple[str, str]:
    """A path as written, and as its folder resolved plus its own name (a link stays a link even when
    the cache folder itself sits behind a symlink)."""
    literal = os.path.abspath(path)
    return literal, os.path.join(os.path.realpath(os.path.dirname(literal)), os.path.basename(literal))


def _keys(path: Path) -> tuple[str, ...]:
    """How a path is known: :func:`_names`, then the file it finally is (its real path and its inode, so
    a hard link is known as the file it shares)."""
    found = inode(path)
    same_file = (f"inode:{found[0]}:{found[1]}",) if found else ()
    return tuple(dict.fromkeys((*_names(path), os.path.realpath(path), *same_file)))


def _single_file(paths: Iterable[Path], path: Path) -> bool:
    paths = tuple(paths)
    return len(paths) <= 1 and (not paths or paths[0] == path) and os.path.isfile(path)


class _Index:
    """Every path the library knows (literal and real), pointing at the record that uses it."""

    def __init__(self, store) -> None:
        self.store = store
        self.models: dict[str, Model] = {}
        self.where: dict[str, tuple[str, str]] = {}
        for model in store.list_models():
            self.add(model)
        for lora in store.list_loras():
            for key in _keys(lora.path):
                self.where.setdefault(key, ("lora", lora.name))

    def add(self, model: Model) -> None:
        self.models[model.id] = model
        for p in (model.path, *model.paths, *model.copies):
            for key in _keys(p):
                self.where[key] = ("model", model.id)
        for c in model.components:
            for key in _keys(c.path):
                self.where.setdefault(key, ("component", model.id))

    def lookup(self, path: Path) -> tuple[str, str, bool] | None:
        """(what, id or name, whether the literal path itself is recorded) for a known path."""
        for key in _keys(path):
            if key in self.where:
                what, ref = self.where[key]
                return what, ref, key in _names(path)
        return None

    def save(self, model: Model) -> Model:
        model = self.store.update_model(model, touch=False)
        self.add(model)
        return model

    def twin(
        self, detection: Detection, found: Found, known: str | None, *, save: bool = True
    ) -> tuple[Model | None, str | None]:
        """A recorded single-file model with the same size, format and SHA-256 as ``detection``, in the
        same role (category and kinds of components: a GGUF with a projector beside it is not the same
        model as that GGUF alone).

        Hashing happens only when sizes match, so a scan of a large store hashes almost nothing; a hash
        worked out for a recorded model is saved into it unless ``save`` is False (a dry run).
        Returns the twin (or None) and the detected file's SHA-256 when it had to be worked out.
        """
        if not _single_file(detection.paths, detection.path):
            return None, known
        kinds = {a.component for a in detection.attachments if a.kind == Kind.COMPONENT}
        kinds |= {kind for kind, _ in found.components}
        category = category_with(detection.category, kinds)
        same_size = [
            m for m in self.models.values()
            if m.size == detection.size and m.format == detection.format and m.category == category
            and {c.kind for c in m.components} == kinds and _single_file(m.paths, m.path)
        ]  # fmt: skip
        if not same_size:
            return None, known
        sha = known or sha256_file(detection.path)
        for model in same_size:
            theirs = model.sha256
            if theirs is None:
                theirs = sha256_file(model.path)
                if save:
                    model = self.save(attrs.evolve(model, sha256=theirs))
            if theirs == sha:
                return model, sha
        return None, sha


def _store_components(library: "Library", found: Found, model: Model) -> tuple[Model, list[str]]:
    """Attach the parts the store names (verified by detection); problems become messages."""
    notes = []
    for kind, path in found.components:
        try:
            d = library.detect(path)
        except CorralError as exc:
            notes.append(f"its {kind} {path} was not attached: {exc}")
            continue
        if d.kind != Kind.COMPONENT or d.component != kind:
            notes.append(f"its {kind} {path} was not attached: detected {d.component or d.kind}")
            continue
        model = with_component(model, Component(kind=kind, path=Path(path), size=d.size, sha256=store_sha256(path),
                                                facts=d.facts))
    return model, notes


def _store_loras(library: "Library", found: Found, model: Model) -> list[str]:
    """Bind the adapters the store applies to ``model`` (checked to fit it); problems become messages."""
    notes = []
    for i, path in enumerate(found.loras):
        wanted = f"{model.name}-adapter" + (f"-{i + 1}" if len(found.loras) > 1 else "")
        try:
            if not path.is_file():
                raise NotFound(f"its blob {path.name} is missing")
            name = library.unique_name(wanted, library.store.lora_name_taken)
            library.add_lora(model.name, path, name=name)
        except CorralError as exc:
            notes.append(f"its adapter {path} was not bound: {exc}")
    return notes


def adopt(
    library: "Library", root: Path, found: Iterable[Found], *, dry_run: bool = False, allow_unsafe: bool = False
) -> list[ScanEntry]:
    """Record every model in ``found`` in place; then report records under ``root`` whose files are gone."""
    index = _Index(library.store)
    entries: list[ScanEntry] = []
    attached: set[str] = set()
    for f in found:
        path = Path(f.path)
        if f.problem:
            entries.append(ScanEntry(path, "error", f.name, message=f.problem))
            continue
        known = index.lookup(path)
        if known is not None:
            entries.extend(_known(index, f, known, dry_run))
            continue
        folder = holding_folder(list(index.models.values()), path)
        if folder is not None:  # a file of an imported model folder: a part of that model, skipped
            entries.append(ScanEntry(path, "exists", folder.name, folder.category,
                                     message=f"a file inside the model folder of {folder.name}"))
            continue
        try:
            detection = library.detect_link(path, allow_unsafe=allow_unsafe)
        except CorralError as exc:
            entries.append(ScanEntry(path, "error", f.name, message=str(exc)))
            continue
        if detection.kind != Kind.MODEL:
            entries.append(ScanEntry(path, str(detection.kind), message=offer(library.store, detection).offer))
            continue
        attached.update(k for a in detection.attachments for k in _keys(a.path))
        attached.update(k for _, p in f.components for k in _keys(p))
        twin, sha = index.twin(detection, f, f.sha256 or store_sha256(path), save=not dry_run)
        if twin is not None:
            entries.append(ScanEntry(path, "copy", twin.name, twin.category, message=f"the same file as {twin.path}"))
            if not dry_run:
                index.save(attrs.evolve(twin, copies=twin.copies + (path,)))
            continue
        name = library.unique_name(f.name) if f.name else None
        if dry_run:
            entries.append(ScanEntry(path, "would-add", name or library.unique_name(default_name(path, detection)),
                                     detection.category))
            continue
        try:
            model = library.model_from_detection(detection, name=name)
            model = attrs.evolve(model, provenance=f.provenance or Provenance(), sha256=sha,
                                 settings={**model.settings, **f.settings})
            model, notes = _store_components(library, f, model)
            model = library.store.add_model(model)
        except CorralError as exc:
            entries.append(ScanEntry(path, "error", name, message=str(exc)))
            continue
        index.add(model)
        notes += _store_loras(library, f, model)
        entries.append(ScanEntry(path, "added", model.name, model.category, message="; ".join(notes) or None))
    entries = [e for e in entries if not (e.status == "component" and set(_keys(e.path)) & attached)]
    return entries + _vanished(index, root, dry_run)


def _known(index: _Index, f: Found, known: tuple[str, str, bool], dry_run: bool) -> list[ScanEntry]:
    """A path the library already has: unchanged, a new place of a recorded file, or a part of a model."""

    what, ref, literal = known
    path = Path(f.path)
    if what == "lora":
        return [ScanEntry(path, "exists", ref, message="a LoRA already bound")]
    model = index.models[ref]
    if what == "component":
        return []
    if not literal:  # the same file reached through another link (two revisions sharing a blob)
        if not dry_run:
            index.save(attrs.evolve(model, copies=model.copies + (path,)))
        return [ScanEntry(path, "copy", model.name, model.category, message=f"the same file as {model.path}")]
    changes = {}
    if f.provenance is not None and model.provenance.hub is None:
        changes["provenance"] = f.provenance  # adopted earlier as a plain file; now the store says more
    if f.sha256 and model.sha256 is None and _single_file(model.paths, model.path):
        changes["sha256"] = f.sha256
    if changes and not dry_run:
        index.save(attrs.evolve(model, **changes))
    return [ScanEntry(path, "exists", model.name, model.category)]


def _under(path: Path, roots: tuple[str, ...]) -> bool:
    p = os.path.abspath(path)
    return any(p == r or p.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


def _vanished(index: _Index, root: Path, dry_run: bool) -> list[ScanEntry]:
    """Records under ``root`` whose files are gone: flagged and reported, never dropped silently."""

    roots = tuple(dict.fromkeys((os.path.abspath(root), os.path.realpath(root))))
    entries = []
    for model in list(index.models.values()):
        places = (model.path, *model.paths, *model.copies)
        if not any(_under(p, roots) for p in places):
            continue
        gone = missing_paths(model)
        copies = [c for c in model.copies if os.path.exists(c)]
        lost_copies = [c for c in model.copies if c not in copies]
        changes: dict = {}
        for c in lost_copies:
            entries.append(ScanEntry(c, "missing", model.name, model.category,
                                     message=f"a copy is gone; the record keeps {model.path}"))
            changes["copies"] = tuple(copies)
        if gone and copies and _single_file((), copies[0]):
            entries.append(ScanEntry(copies[0], "moved", model.name, model.category,
                                     message=f"{model.path} is gone; the recorded copy is used instead"))
            changes.update(path=copies[0], paths=(copies[0],), copies=tuple(copies[1:]), missing=False)
        elif gone:
            entries.append(ScanEntry(gone[0], "missing", model.name, model.category,
                                     message=f"{len(gone)} file(s) gone; restore them, or forget the record: "
                                     f"corral rm {model.name}"))
            changes["missing"] = True
        elif model.missing:
            changes["missing"] = False  # the files are back
        changed = attrs.evolve(model, **changes)
        if changed != model and not dry_run:
            try:
                index.save(changed)
            except Conflict as exc:
                entries.append(ScanEntry(model.path, "error", model.name, message=str(exc)))
    return entries
