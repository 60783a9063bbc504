"""Adding what a pull brought to the library, each record carrying its provenance (hub, repo, revision,
files). Models are added; a pulled projector is attached to its model; a LoRA is bound to ``--base`` or
offered for binding; anything else is reported with the command that adopts it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import attrs
from attrs import frozen

from corral.adopt import unit_names
from corral.detect.gguf import split_info
from corral.errors import Conflict, DetectionError
from corral.intake import default_name, find_duplicate, lora_record, offer, with_component
from corral.pull.variants import is_gguf, is_mmproj
from corral.records import Component, ComponentKind, Detection, Kind, Lora, Model, Provenance, RemoteFile, Snapshot

#: Single weight files worth detecting one by one when their folder is not a model directory.
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".onnx")


@frozen
class Adoption:
    """What the library gained from a pull."""

    models: tuple[Model, ...] = ()
    existing: tuple[Model, ...] = ()
    loras: tuple[Lora, ...] = ()
    offers: tuple[str, ...] = ()


def pulled_root(pulled: Sequence[tuple[RemoteFile, Path]]) -> Path:
    """The folder the repository's files landed in (the snapshot folder, or ``--dest``)."""
    name, path = pulled[0][0].name, pulled[0][1]
    return path.parents[len(name.split("/")) - 1]


def provenance_of(snapshot: Snapshot, files: Sequence[RemoteFile]) -> Provenance:
    return Provenance(
        hub=snapshot.source,
        repo=snapshot.repo,
        revision=snapshot.commit or snapshot.revision,
        files=tuple(f.name for f in files),
        url=snapshot.url,
    )


def _candidates(pulled: Sequence[tuple[RemoteFile, Path]]) -> tuple[list[Path], list[Path]]:
    """(what to detect as models, the projectors pulled alongside)."""
    projectors = [p for f, p in pulled if is_mmproj(f.name)]
    ggufs = []
    for f, p in pulled:
        if is_gguf(f.name) and not is_mmproj(f.name):
            split = split_info(p)
            if split is None or split[1] == 1:
                ggufs.append(p)
    if ggufs:
        return ggufs, projectors
    if projectors:
        return projectors, []
    return [pulled_root(pulled)], []


def adopt(
    library,
    snapshot: Snapshot,
    pulled: Sequence[tuple[RemoteFile, Path]],
    *,
    name: str | None = None,
    base: str | None = None,
) -> Adoption:
    """Detect what was pulled and add it to ``library`` (a :class:`corral.library.Library`)."""
    if not pulled:
        return Adoption()
    provenance = provenance_of(snapshot, [f for f, _ in pulled])
    candidates, projectors = _candidates(pulled)
    detections: list[Detection] = []
    offers: list[str] = []
    for path in candidates:
        try:
            detections.append(library.detect_link(path))
        except DetectionError as exc:
            if path.is_dir():
                detections.extend(_weights_one_by_one(library, pulled, offers))
                if not detections and not offers:
                    offers.append(f"{exc}. The files are in {path}")
            else:
                offers.append(str(exc))
    models, existing, loras = [], [], []
    # Named as `corral scan --hf-cache` names what it finds: the repository, with a tag per model when
    # several came (`org/repo:Q4_K_M` beside `org/repo:Q8_0`).
    names = unit_names(snapshot.repo, pulled_root(pulled), [d.path for d in detections if d.kind == Kind.MODEL])
    for detection in detections:
        if detection.kind == Kind.MODEL:
            added, known = _add_model(library, detection, provenance, projectors, name, names[detection.path])
            (models if added else existing).append(known)
            name = None  # --name goes to the first model only
        elif detection.kind == Kind.LORA and base is not None:
            loras.append(bind_lora(library, base, detection, provenance, name))
        else:
            offers.append(offer(library.store, detection, pulled=True).offer)
    return Adoption(tuple(models), tuple(existing), tuple(loras), tuple(offers))


def _weights_one_by_one(library, pulled, offers: list[str]) -> list[Detection]:
    found = []
    for f, path in pulled:
        if path.suffix.lower() in WEIGHT_SUFFIXES:
            try:
                found.append(library.detect_link(path))
            except DetectionError as exc:
                offers.append(str(exc))
    return found


def _add_model(
    library, detection: Detection, provenance: Provenance, projectors: list[Path], name: str | None, default: str
) -> tuple[bool, Model]:
    """(added?, the model): ``name`` (``--name``), else ``default`` made unique. An existing record for the
    same path keeps its name and gains provenance."""
    store = library.store
    existing = store.find_model_by_path(detection.path)
    if existing is not None:
        if existing.provenance != provenance:
            existing = store.update_model(attrs.evolve(existing, provenance=provenance))
        return False, existing
    duplicate, sha = find_duplicate(store, detection)
    if duplicate is not None and duplicate.same_files:  # the same file as a record: that record it is
        return False, duplicate.model
    model = library.model_from_detection(detection, name=name or library.unique_name(default))
    model = attrs.evolve(model, provenance=provenance, sha256=sha if len(model.paths) <= 1 else None)
    if projectors and model.component(ComponentKind.MMPROJ) is None:
        model = _attach_projector(library, model, projectors[0])
    return True, store.add_model(model)


def _attach_projector(library, model: Model, path: Path) -> Model:
    """The pulled projector as the model's mmproj component (detection checks it is one)."""
    detection = library.detect_link(path)
    if detection.kind != Kind.COMPONENT or detection.component != ComponentKind.MMPROJ:
        return model
    component = Component(kind=ComponentKind.MMPROJ, path=detection.path, size=detection.size, facts=detection.facts)
    return with_component(model, component)


def bind_lora(library, base_ref: str, detection: Detection, provenance: Provenance, name: str | None) -> Lora:
    """Bind a pulled LoRA to ``base_ref`` after the same fit check ``corral lora add`` runs."""
    store = library.store
    base = store.get_model(base_ref)
    for lora in store.list_loras(base.id):
        if lora.path == detection.path:
            return lora
    library.host.first_result("check_lora", base=base, lora=detection)
    if name is not None and store.lora_name_taken(name):
        raise Conflict(f"a LoRA named {name!r} already exists; choose another --name")
    name = name or library.unique_name(default_name(detection.path), store.lora_name_taken)
    return store.add_lora(lora_record(detection, base, name, provenance=provenance))
