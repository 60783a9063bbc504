"""From a detection to a record: the one set of rules that ``corral import``, ``corral scan`` (and the
adoption of other tools' stores) and ``corral pull`` share.

* names: a model's default name from its own metadata (GGUF ``general.name``, the model card, the
  config's ``_name_or_path``) before its file or folder name, made unique in the library; every name
  checked (no spaces or control characters, never another record's id or id prefix);
* duplicates: a file the library already holds (the same path, the same inode, the same SHA-256 as a
  record that knows its own, or a file inside an imported model folder) is found before a record is made;
* components: attaching one replaces the one of the same kind, and an mmproj makes a chat model
  multimodal;
* LoRAs: the record of an adapter bound to its base;
* offers: what to do with a file that is a component or a LoRA rather than a model of its own.

It sits beside the library's record operations (:mod:`corral.library`) and below adoption and pull,
which import it; it never imports them.
"""

from __future__ import annotations

import json
import os
import re
import unicodedata
from pathlib import Path
from typing import Callable

import attrs

from corral.errors import Conflict, InvalidSetting
from corral.manifests.files import inode, sha256_file
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
    #: With ``--as-variant``: the name of the record whose files the new one shares.
    variant_of: str | None = None


@attrs.frozen
class ScanEntry:
    """One line of ``corral scan``: a path and what became of it."""

    path: Path
    status: str  # added | would-add | exists | copy | missing | moved | component | lora | error
    name: str | None = None
    category: Category | None = None
    message: str | None = None


# --- names -----------------------------------------------------------------------------------------

#: What names may hold, said in every refusal.
NAME_RULE = "a name takes letters, digits and . _ - / : @ +, no spaces; org/name:tag is fine"
#: A record id: 12 hex digits (:func:`corral.store.new_id`); a name like one would hide a record.
_ID_LIKE = re.compile(r"^[0-9a-f]{12}$")
_HEX = re.compile(r"^[0-9a-f]{4,}$")
#: Metadata names that say nothing (converters fill them from a folder name): the file name is better.
_GENERIC = {"model", "models", "hf", "gguf", "output", "out", "tmp", "checkpoint", "merged", "base", "unknown"}
#: Bounded reads of a folder's model card and config (they are small; anything bigger is not one).
_CARD_LIMIT = 64 * 1024
_CONFIG_LIMIT = 1024 * 1024
_HUB_ID = re.compile(r"^[\w.-]+(/[\w.-]+)?$")


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a record, or None."""
    if not name or not name.strip():
        return "it is empty"
    if any(ch.isspace() for ch in name):
        return "it has a space"
    if any(unicodedata.category(ch).startswith("C") for ch in name):
        return "it has a control character"
    if name.startswith("-"):
        return "it starts with '-' (it would read as an option)"
    if len(name) > 200:
        return "it is longer than 200 characters"
    if _ID_LIKE.match(name.lower()):
        return "it looks like a record id (12 hex digits)"
    return None


def clean_name(text: str) -> str:
    """``text`` made a usable name: spaces become '-', control characters go (for names from metadata
    and file names, which are not checked but cleaned)."""
    text = "".join(ch for ch in str(text) if not unicodedata.category(ch).startswith("C") or ch.isspace())
    text = re.sub(r"\s+", "-", text.strip())
    return re.sub(r"-{2,}", "-", text).strip("-")[:180]


def shadowed(store: Store, name: str, *, own_id: str | None = None) -> Model | None:
    """The record whose id ``name`` equals or begins (4 hex digits or more), which a record named
    ``name`` would hide from `corral show ID`; None when there is none."""
    lowered = name.lower()
    if not _HEX.match(lowered):
        return None
    return next((m for m in store.list_models() if m.id != own_id and m.id.startswith(lowered)), None)


def check_name(store: Store, name: str, *, own_id: str | None = None) -> str:
    """``name`` if a record (``own_id``, when renaming) may take it; else one clear error."""
    hidden = shadowed(store, name, own_id=own_id)
    if hidden is not None:
        raise Conflict(f"a model named {name!r} would hide {hidden.name} (its id {hidden.id} starts with "
                       f"{name!r}); choose another name")
    problem = name_problem(name)
    if problem:
        better = clean_name(name)
        hint = f"; try {better!r}" if better and better != name and not name_problem(better) else ""
        raise InvalidSetting(f"{name!r} is not a usable model name: {problem}{hint}; {NAME_RULE}")
    if store.name_taken(name):
        owner = next((m for m in store.list_models() if m.name.lower() == name.lower()), None)
        if owner is None or owner.id != own_id:
            raise Conflict(f"a model named {name!r} is already in the library; choose another name")
    return name


def name_free(store: Store) -> Callable[[str], bool]:
    """``taken`` for :func:`unique_name`: a name is taken when a record has it, when it would hide a
    record's id, or when it is not usable."""
    return lambda n: store.name_taken(n) or name_problem(n) is not None or shadowed(store, n) is not None


def _read_bounded(path: Path, limit: int) -> str | None:
    try:
        if not path.is_file() or path.stat().st_size > limit:
            return None
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def card_name(folder: Path) -> str | None:
    """The model's name in its Hugging Face model card (``README.md``): the front matter's
    ``model_name`` or ``model-index`` name, else a one-word title (``# all-MiniLM-L6-v2``)."""
    text = _read_bounded(folder / "README.md", _CARD_LIMIT)
    if not text:
        return None
    body = text
    if text.startswith("---"):
        end = text.find("\n---", 3)
        front, body = (text[3:end], text[end + 4:]) if end > 0 else ("", text)
        for pattern in (r"(?m)^model_name:\s*(\S.*)$", r"(?ms)^model-index:\s*\n\s*-\s*name:\s*(\S.*?)$"):
            if m := re.search(pattern, front):
                value = m.group(1).strip().strip("'\"")
                if value and not value.startswith(("{", "[")):
                    return value
    if m := re.search(r"(?m)^#\s+(.+?)\s*$", body):
        title = re.sub(r"^model card for\s+", "", m.group(1), flags=re.I).strip()
        if title and not any(ch.isspace() for ch in title):
            return title.rsplit("/", 1)[-1]
    return None


def config_name(folder: Path) -> str | None:
    """A hub repository name in the folder's ``config.json`` (or ``model_index.json``) ``_name_or_path``
    (its last part); a local path there says nothing and is ignored."""
    for file in ("config.json", "model_index.json"):
        text = _read_bounded(folder / file, _CONFIG_LIMIT)
        try:
            value = json.loads(text).get("_name_or_path") if text else None
        except (ValueError, AttributeError):
            continue
        if isinstance(value, str) and _HUB_ID.match(value) and not value.startswith("."):
            return value.rsplit("/", 1)[-1]
    return None


def metadata_name(detection: Detection) -> str | None:
    """The name the model gives itself: GGUF ``general.name`` (lower-cased, with the quantization
    when it lacks one, so two quantizations of one model get their own names), the model card, the
    config's ``_name_or_path``; None when it gives none worth having."""
    path = Path(detection.path)
    if detection.format == Format.GGUF:
        name = clean_name(detection.facts.extra.get("name") or "").lower()
        quant = (detection.facts.quantization or "").lower()
        if name and name not in _GENERIC and quant and quant not in name:
            name = f"{name}-{quant}"
    elif path.is_dir():
        name = clean_name(card_name(path) or config_name(path) or "")
    else:
        return None
    if not name or name.lower() in _GENERIC or name_problem(name):
        return None
    return name


def default_name(path: Path, detection: Detection | None = None) -> str:
    """The name a model gets when none is given: from ``detection``'s metadata (:func:`metadata_name`),
    else from its path (a split GGUF is named once)."""
    if detection is not None and (named := metadata_name(detection)):
        return named
    stem = path.name if path.is_dir() else path.stem
    stem = clean_name(re.sub(r"-0*1-of-\d+$", "", stem))
    return stem if stem and not name_problem(stem) else "model"


def unique_name(wanted: str, taken: Callable[[str], bool]) -> str:
    """``wanted``, or ``wanted-2``, ``wanted-3``… while ``taken`` says the name is used."""
    name, n = wanted, 2
    while taken(name):
        name, n = f"{wanted}-{n}", n + 1
    return name


# --- duplicates ------------------------------------------------------------------------------------


@attrs.frozen
class Duplicate:
    """A record that already holds a detected file: ``how`` says in what way; ``same_files`` is False
    for a file inside the record's model folder (a part of it, not the same model)."""

    model: Model
    how: str
    same_files: bool = True


def _inside(child: str, folder: str) -> bool:
    return child.startswith(folder.rstrip(os.sep) + os.sep)


def holding_folder(models: list[Model], path: Path) -> Model | None:
    """The model whose folder holds ``path`` (a file of an imported model directory), or None."""
    real = os.path.realpath(path)
    return next((m for m in models if Path(m.path).is_dir() and _inside(real, os.path.realpath(m.path))), None)


def find_duplicate(store: Store, detection: Detection, *, known_sha256: str | None = None
                   ) -> tuple[Duplicate | None, str | None]:
    """The record that already holds ``detection``'s file, and its SHA-256 when it had to be worked out.

    In order: the same path; the same file under another name (a hard link or a symlink: the same
    inode); a file inside an imported model folder; the same content as a single-file record that knows
    its SHA-256 (hashed only when the sizes match, so importing hashes nothing in the usual case).
    """
    models = store.list_models()
    path = Path(detection.path)
    mine = tuple(detection.paths or (path,))
    for m in models:
        if path == Path(m.path) or (not Path(m.path).is_dir() and path in map(Path, m.paths)):
            return Duplicate(m, f"is already in the library as {m.name}"), known_sha256
    folder = holding_folder(models, path)
    if folder is not None:
        return Duplicate(folder, f"is inside the model folder of {folder.name} ({folder.path})",
                         same_files=False), known_sha256
    inodes = {k for p in (path, *mine) if (k := inode(p)) is not None}
    for m in models:
        if path.is_dir() and inode(m.path) not in inodes:
            continue  # a folder holding recorded files (a pipeline and its transformer) is a model of its own
        for p in (m.path, *m.paths, *m.copies):
            if inode(p) in inodes:
                if Path(m.path).is_dir() and not path.is_dir():  # one file of a model folder
                    return Duplicate(m, f"is the same file as {p}, a file of the model folder of {m.name}",
                                     same_files=False), known_sha256
                return Duplicate(m, f"is the same file as {m.name} ({p})"), known_sha256
    if len(mine) > 1 or not path.is_file():
        return None, known_sha256
    same_size = [m for m in models if m.sha256 and m.size == detection.size and len(m.paths) <= 1]
    if not same_size:
        return None, known_sha256
    sha = known_sha256 or sha256_file(path)
    for m in same_size:
        if m.sha256 == sha:
            return Duplicate(m, f"has the same content (SHA-256 {sha[:12]}) as {m.name} ({m.path})"), sha
    return None, sha


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
