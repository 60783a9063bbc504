"""From a detection to a record: the one set of rules that ``corral import``, ``corral scan`` (and the
adoption of other tools' stores) and ``corral pull`` share.

* names: a model's default name from its path, made unique in the library;
* components: attaching one replaces the one of the same kind, and an mmproj makes a chat model
  multimodal;
* LoRAs: the record of an adapter bound to its base;
* offers: what to do with a file that is a component or a LoRA rather than a model of its own.

It sits beside the library's record operations (:mod:`corral.library`) and below adoption and pull,
which import it; it never imports them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

import attrs

from corral.records import Category, Component, ComponentKind, Detection, Format, Kind, Lora, Model, Provenance
from corral.store import Store, new_id
from corral.words import a_or_an


@attrs.frozen
class ImportResult:
    """What ``import`` did: a new model, or (for a component or LoRA file) an offer of where it fits."""

    detection: Detection
    model: Model | None = None
    offer: str | None = None
    candidates: tuple[str, ...] = ()


@attrs.frozen
class ScanEntry:
    """One line of ``corral scan``: a path and what became of it."""

    path: Path
    status: str  # added | would-add | exists | copy | missing | moved | component | lora | error
    name: str | None = None
    category: Category | None = None
    message: str | None = None


def default_name(path: Path) -> str:
    """The name a model gets from its path when none is given (a split GGUF is named once)."""
    stem = path.name if path.is_dir() else path.stem
    stem = re.sub(r"-0*1-of-\d+$", "", stem)
    return stem or "model"


def unique_name(wanted: str, taken: Callable[[str], bool]) -> str:
    """``wanted``, or ``wanted-2``, ``wanted-3``… while ``taken`` says the name is used."""
    name, n = wanted, 2
    while taken(name):
        name, n = f"{wanted}-{n}", n + 1
    return name


def category_with(category: Category | None, kinds: set[ComponentKind]) -> Category | None:
    """The category of a model of ``category`` carrying components of ``kinds``: an mmproj makes a chat
    model multimodal."""
    return Category.MULTIMODAL if ComponentKind.MMPROJ in kinds and category == Category.CHAT else category


def with_component(model: Model, component: Component) -> Model:
    """``model`` with ``component`` attached in place of any of its kind (see :func:`category_with`)."""
    components = tuple(c for c in model.components if c.kind != component.kind) + (component,)
    return attrs.evolve(model, components=components, category=category_with(model.category, {component.kind}))


def lora_record(detection: Detection, base: Model, name: str, *, weight: float = 1.0,
                provenance: Provenance | None = None) -> Lora:
    """The (unsaved) record of the adapter ``detection`` bound to ``base``."""
    return Lora(
        id=new_id(),
        name=name,
        base_id=base.id,
        format=detection.format,
        path=detection.path,
        size=detection.size,
        weight=weight,
        facts=detection.facts,
        provenance=provenance or Provenance(),
    )


def offer(store: Store, detection: Detection, *, pulled: bool = False) -> ImportResult:
    """What to do with a component or LoRA file, and the library's models it may belong to.

    ``pulled``: the file came from ``corral pull``, which can bind it itself when pulled again with
    ``--base``.
    """
    if detection.kind == Kind.LORA:
        arch = detection.facts.architecture or detection.facts.base_model
        fits = [m.name for m in store.list_models() if arch and m.facts.architecture == arch]
        hint = f" (in the library: {', '.join(fits)})" if fits else ""
        text = (f"{detection.path} is a LoRA adapter for {arch or 'an unknown base'}. Bind it to its base "
                f"model{hint}: corral lora add BASE {detection.path}")
        if pulled:
            text += "   (or pull again with --base BASE)"
        return ImportResult(detection=detection, offer=text, candidates=tuple(fits))
    kind = detection.component or detection.kind
    if kind == ComponentKind.MMPROJ:
        allowed = {Category.CHAT, Category.MULTIMODAL}
        fits = [m.name for m in store.list_models() if m.category in allowed and m.format == Format.GGUF]
    else:
        fits = [m.name for m in store.list_models(Category.IMAGE.value)]
    text = (f"{detection.path} is {a_or_an(kind)} component, not a model of its own. "
            f"Attach it: corral component add MODEL {kind} {detection.path}")
    return ImportResult(detection=detection, offer=text, candidates=tuple(fits))
