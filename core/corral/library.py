"""Library operations shared by the CLI and the server: import, edit, remove, LoRAs, components and
settings: the records. Loading a model (driver choice, the checks before a load) is
:mod:`corral.loading`; scanning folders and other tools' stores is :func:`corral.adopt.scan`; the
naming and attachment rules all three intake paths share are in :mod:`corral.intake`.

Every operation either completes or leaves the store as it was: records are written in one transaction
only after detection and every check succeeded.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import attrs

from corral import known
from corral.errors import Conflict, DetectionError, Incompatible, InvalidSetting, NotFound, UnsafeFile
from corral.intake import (
    ImportResult,
    check_name,
    clean_name,
    default_name,
    find_duplicate,
    lora_record,
    name_free,
    offer,
    unique_name,
    with_component,
)
from corral.home import corral_home
from corral.records import (
    Category,
    Component,
    ComponentKind,
    Detection,
    Format,
    Kind,
    Lora,
    Model,
    SettingSpec,
)
from corral.settings import apply_updates, merged_specs
from corral.store import Store, new_id
from corral.words import a_or_an

if TYPE_CHECKING:
    from corral.plugins import PluginHost

#: Components that image models take; mmproj and draft belong to GGUF chat/multimodal models.
IMAGE_COMPONENTS = frozenset({ComponentKind.VAE, ComponentKind.CLIP_L, ComponentKind.CLIP_G, ComponentKind.T5XXL})
#: How many tokens a draft's vocabulary may differ from its base's (llama.cpp's own limit,
#: SPEC_VOCAB_MAX_SIZE_DIFFERENCE: fine-tunes pad the same vocabulary differently).
DRAFT_VOCAB_SLACK = 128


class Library:
    """The library of models, backed by a :class:`Store`, extended by a :class:`PluginHost`."""

    def __init__(self, store: Store, host: PluginHost | None = None) -> None:
        self.store = store
        self._host = host

    @property
    def host(self) -> PluginHost:
        """The plugin host (the process-wide one unless given): loaded on first use, so record
        operations that need no plugin (``corral ls``) never load them."""
        if self._host is None:
            from corral.plugins import get_host  # the plugins' entry points are read only when needed

            self._host = get_host()
        return self._host

    @host.setter
    def host(self, host: PluginHost) -> None:
        self._host = host

    # --- detection -------------------------------------------------------------------------------

    def detect(self, path: Path, *, allow_unsafe: bool = False) -> Detection:
        """Detect ``path`` through plugins first, then the core; unknown formats raise."""
        path = Path(path).expanduser()
        if not path.exists():
            raise NotFound(f"{path}: no such file or directory")
        path = path.resolve()
        try:
            detection = self.host.first_result("detect_model", path=path)
        except UnsafeFile:
            if not allow_unsafe:
                raise
            from corral.detect import detect_path

            detection = detect_path(path, allow_unsafe=True)
        if detection is None:
            raise DetectionError(f"{path}: not a model format Corral or its plugins recognise")
        return detection

    def detect_link(self, path: Path, *, allow_unsafe: bool = False) -> Detection:
        """Detect ``path`` keeping the name a hub cache or model store gave it: a link is recorded as the
        link, not as the blob it points to (whose name says nothing)."""
        if not os.path.islink(path):
            return self.detect(path, allow_unsafe=allow_unsafe)
        if not os.path.exists(path):
            raise NotFound(f"{path}: a link to a file that is gone ({os.readlink(path)}); re-download it")
        if path.suffix.lower() == ".gguf":
            from corral.detect.gguf import detect_gguf

            # The link's own name and folder find split parts and projectors.
            return detect_gguf(path)
        detection = self.detect(path, allow_unsafe=allow_unsafe)
        real = Path(os.path.realpath(path))
        swap = lambda p: path if p == real else p  # noqa: E731
        return attrs.evolve(detection, path=swap(detection.path), paths=tuple(swap(p) for p in detection.paths))

    # --- import ----------------------------------------------------------------------------------

    def unique_name(self, wanted: str, taken=None) -> str:
        """``wanted`` (made a usable name), or ``wanted-2``, ``wanted-3``… when a model has it or it would
        hide a model's id (with ``taken``: when ``taken`` says so, e.g. a LoRA has it)."""
        wanted = clean_name(wanted) or "model"
        return unique_name(wanted, taken or name_free(self.store))

    def model_from_detection(
        self,
        detection: Detection,
        *,
        name: str | None = None,
        category: Category | None = None,
        description: str = "",
    ) -> Model:
        """A new (unsaved) record for a detected model, its attachments turned into components."""
        if category is None:
            category = detection.category
        if category is None:
            raise DetectionError(
                f"{detection.path}: cannot tell what this {detection.format} model is for; "
                f"pass --category ({', '.join(self.host.category_names())})"
            )
        components = tuple(
            Component(kind=a.component, path=a.path, size=a.size, facts=a.facts)
            for a in detection.attachments
            if a.kind == Kind.COMPONENT and a.component is not None
        )
        tags = tuple(detection.facts.extra.get("tags", ()))
        return Model(
            id=new_id(),
            name=check_name(self.store, name) if name else self.unique_name(default_name(detection.path, detection)),
            category=category,
            format=detection.format,
            path=detection.path,
            description=description,
            paths=detection.paths or (detection.path,),
            size=detection.size,
            facts=detection.facts,
            tags=tags,
            components=components,
            unsafe=detection.unsafe,
            confidence=detection.confidence,
            reasons=tuple(detection.reasons),
        )

    def import_path(
        self,
        path: Path,
        *,
        category: Category | None = None,
        name: str | None = None,
        description: str = "",
        allow_unsafe: bool = False,
        template: str | None = None,
        components: Mapping[ComponentKind, Path] | None = None,
        tags: Sequence[str] | None = None,
        as_variant: bool = False,
    ) -> ImportResult:
        """Detect ``path`` and add it to the library in place (files are never copied or moved).

        ``template`` (``sd_official``, ``flux``, ``video``; see :mod:`corral.templates`) imports an image
        model whose parts are separate files: ``components`` maps each kind to its file, and the import is
        refused when one the template needs is neither given nor carried by the main model. ``tags`` sets
        the capability tags (default: the detected ones, or the template's).

        A file the library already holds (:func:`corral.intake.find_duplicate`) is refused, naming the
        record that holds it; with ``as_variant`` it becomes a second record over that record's files
        (:meth:`copy`), or, for a file inside an imported model folder, a record of its own.
        """
        detection = self.detect(path, allow_unsafe=allow_unsafe)
        if detection.kind != Kind.MODEL and template is None and not components:
            return offer(self.store, detection)
        duplicate, sha = find_duplicate(self.store, detection)
        if duplicate is not None and not as_variant:
            way = "add a second record over the same files" if duplicate.same_files else "make it a record of its own"
            raise Conflict(f"{detection.path} {duplicate.how}; use {duplicate.model.name}, or {way}: "
                           f"corral import {detection.path} --as-variant [--name NEW]")
        if duplicate is not None and duplicate.same_files:
            variant = self.copy(duplicate.model.id, name or self.unique_name(duplicate.model.name))
            if description or tags is not None:
                variant = self.edit(variant.id, description=description or None)
                if tags is not None:
                    variant = self.store.update_model(attrs.evolve(variant, tags=self._checked_tags(variant, tags)))
            return ImportResult(detection=detection, model=variant, variant_of=duplicate.model.name)
        if template is not None or components:
            model = self._model_from_parts(detection, template, components or {}, category, name, description)
        else:
            model = self.model_from_detection(detection, name=name, category=category, description=description)
        if tags is not None:
            model = attrs.evolve(model, tags=self._checked_tags(model, tags))
        if sha is not None and len(model.paths) <= 1:
            model = attrs.evolve(model, sha256=sha)  # worked out for the duplicate check: kept
        return ImportResult(detection=detection, model=self.store.add_model(model))

    def _model_from_parts(
        self,
        detection: Detection,
        template_name: str | None,
        components: Mapping[ComponentKind, Path],
        category: Category | None,
        name: str | None,
        description: str,
    ) -> Model:
        """A new image-model record from a main model file, its template and its component files."""
        from corral.templates import bundled_components, get_template, template_for_family

        template = get_template(template_name) if template_name is not None else None
        wanted = f"--template {template.name}" if template else "image components"
        if detection.kind != Kind.MODEL:
            what = detection.component or detection.kind
            raise Incompatible(f"{detection.path} is {a_or_an(what)}, not a main model; import the UNet or transformer "
                               f"file (or the diffusers folder) and pass this file with --{what}")
        if category not in (None, Category.IMAGE):
            raise Incompatible(f"{detection.path}: {wanted} is for image models, not --category {category}")
        family = detection.facts.architecture
        if template is not None and family and family not in template.families:
            if detection.category not in (None, Category.IMAGE):
                raise Incompatible(f"{detection.path} is {a_or_an(detection.category)} model ({family}), not an image model; "
                                   f"import it without --template")
            right = template_for_family(family)
            fix = f"import it with --template {right.name}" if right else "import it without --template"
            raise Incompatible(f"{detection.path} is {a_or_an(family)} model, not {template.label}; {fix}")
        if detection.category not in (None, Category.IMAGE) and template is None:
            raise Incompatible(f"{detection.path} is {a_or_an(detection.category)} model; image components attach to "
                               "image models only")
        model = self.model_from_detection(detection, name=name, category=Category.IMAGE, description=description)
        attached = tuple(self._checked_component(model, kind, path) for kind, path in components.items())
        extra = dict(model.facts.extra)
        tags = model.tags
        if template is not None:
            bundled = bundled_components(detection, template)
            given = {c.kind for c in attached}
            missing = [k for k in template.components if k not in given and k not in bundled]
            if missing:
                flags = " ".join(f"--{k} PATH" for k in missing)
                raise Incompatible(f"{detection.path}: the {template.name} template needs "
                                   f"{', '.join(map(str, missing))} besides the main model, and "
                                   f"{'they are' if len(missing) > 1 else 'it is'} missing; pass {flags}")
            extra.update(template=template.name, bundled=[k.value for k in bundled])
            tags = template.tags
            family = family or template.families[0]
        components_all = tuple(c for c in model.components if c.kind not in {a.kind for a in attached}) + attached
        facts = attrs.evolve(model.facts, extra=extra, architecture=family)
        return attrs.evolve(model, facts=facts, components=components_all, tags=tags)

    def check_files(self, model: Model) -> Model:
        """``model`` with ``missing`` telling whether its files are on disk now (nothing is saved)."""
        from corral.manifests.files import with_missing

        return with_missing(model)

    # --- edit / remove ---------------------------------------------------------------------------

    def edit(self, ref: str, *, name: str | None = None, description: str | None = None) -> Model:
        model = self.store.get_model(ref)
        changes: dict[str, Any] = {}
        if name is not None and name != model.name:
            changes["name"] = check_name(self.store, name, own_id=model.id)
        if description is not None:
            changes["description"] = description
        if not changes:
            return model
        return self.store.update_model(attrs.evolve(model, **changes))

    def relink(self, ref: str, path: Path) -> Model:
        """Point ``ref``'s record at ``path`` (its files moved): refused unless detection finds the same
        kind of model there (format, category, architecture); name, id, settings and LoRAs stay."""
        model = self.store.get_model(ref)
        detection = self.detect(Path(path).expanduser().absolute(), allow_unsafe=bool(model.unsafe))
        same = {Category.CHAT, Category.MULTIMODAL}  # an mmproj component makes a chat model multimodal
        found_category = detection.category or model.category
        arch_was, arch_now = model.facts.architecture, detection.facts.architecture
        differences = []
        if detection.kind != Kind.MODEL:
            differences.append(f"it is {a_or_an(detection.kind)}, not a model")
        if detection.format != model.format:
            differences.append(f"format {detection.format}, not {model.format}")
        if found_category != model.category and not {found_category, model.category} <= same:
            differences.append(f"category {found_category}, not {model.category}")
        if arch_was and arch_now and arch_was.lower() != arch_now.lower():
            differences.append(f"architecture {arch_now}, not {arch_was}")
        if differences:
            raise Incompatible(f"{detection.path} is not the same kind of model as {model.name}: "
                               f"{'; '.join(differences)}; import it as a new model instead (corral import)")
        if detection.path == Path(model.path):
            return self.check_files(model)
        other = self.store.find_model_by_path(detection.path)
        if other is not None:
            raise Conflict(f"{detection.path} is already the record {other.name}; use that one, or `corral rm` it first")
        facts = attrs.evolve(detection.facts, architecture=arch_was or arch_now,
                             extra={**model.facts.extra, **detection.facts.extra})
        moved = attrs.evolve(model, path=detection.path, paths=detection.paths or (detection.path,),
                             size=detection.size, sha256=None, facts=facts, missing=False,
                             copies=tuple(c for c in model.copies if Path(c) != detection.path))
        return self.store.update_model(moved)

    def copy(self, ref: str, name: str, *, settings: Mapping[str, Any] | None = None) -> Model:
        """A second record for ``ref``'s files under ``name`` (Ollama's copy): its own id, settings and
        history, the same weights and components. The store keeps one record per path, so the copy's
        files are links in the library's ``copies/<id>/`` folder to the original ones; no bytes are copied,
        and removing either record leaves every file where it is. ``settings`` are saved on the copy over
        the ones it inherits (checked before anything is written)."""
        from corral.manifests import library_home
        from corral.records import utcnow

        model = self.store.get_model(ref)
        check_name(self.store, name)
        saved = dict(model.settings)
        if settings:
            specs, hint = self.setting_specs(model)
            saved = apply_updates(saved, settings, (), specs, name, hint, model=model)
        ident = new_id()
        folder = library_home(self) / "copies" / ident
        folder.mkdir(parents=True)
        top = Path(model.path)

        def linked(path: Path) -> Path:
            path = Path(path)
            if top.is_dir() and path != top and top in path.parents:  # a file inside a model folder
                return folder / top.name / path.relative_to(top)
            link = folder / path.name
            if not os.path.lexists(link):
                link.symlink_to(path, target_is_directory=path.is_dir())
            return link

        path = linked(top)
        paths = tuple(linked(p) for p in model.paths)
        now = utcnow()
        twin = attrs.evolve(model, id=ident, name=name, path=path, paths=paths, copies=(), settings=saved,
                            created=now, updated=now)
        return self.store.add_model(twin)

    def retag(self, ref: str, *, add: Sequence[str] = (), remove: Sequence[str] = ()) -> Model:
        """Add and remove capability tags (``text-to-image``, ``image-to-image``, ``video``...)."""
        model = self.store.get_model(ref)
        dropped = {t.strip().lower() for t in remove}
        unknown = sorted(dropped - set(model.tags))
        if unknown:
            raise NotFound(f"{model.name} has no tag {unknown[0]!r} (its tags: {', '.join(model.tags) or 'none'})")
        tags = self._checked_tags(model, [t for t in model.tags if t not in dropped] + list(add))
        if tags == model.tags:
            return model
        return self.store.update_model(attrs.evolve(model, tags=tags))

    @staticmethod
    def _checked_tags(model: Model, tags: Sequence[str]) -> tuple[str, ...]:
        from corral.templates import check_tags

        if model.category == Category.IMAGE:
            return check_tags(tags, model.name)
        return tuple(dict.fromkeys(t.strip().lower() for t in tags if t.strip()))

    def remove(self, ref: str) -> tuple[Model, list[Lora]]:
        """Delete the record (its LoRA records and its manifest); the files stay where they are."""
        from corral.manifests import library_home, remove_manifest

        from corral.store.leases import describe_holders, is_server

        model = self.store.get_model(ref)
        holders = self.store.lease_holders(model.id)  # leases of processes gone are cleared here
        if holders:
            if any(is_server(pid) for pid, _ in holders):
                fix = f"`corral unload {model.name}` first"
            elif all(pid == os.getpid() for pid, _ in holders):
                fix = "unload it first"
            else:
                fix = "unload it there, or end that process, first"
            raise Conflict(f"{model.name} is loaded by {describe_holders(holders)}; {fix}")
        loras = self.store.list_loras(model.id)
        self.store.delete_model(model.id)
        remove_manifest(library_home(self), model.id)
        return model, loras

    # --- LoRAs -----------------------------------------------------------------------------------

    def add_lora(self, base_ref: str, path: Path, *, name: str | None = None, weight: float = 1.0) -> Lora:
        base = self.store.get_model(base_ref)
        detection = self.detect(path)
        if detection.kind != Kind.LORA:
            raise Incompatible(
                f"{detection.path} is not a LoRA adapter (detected {a_or_an(detection.kind)} "
                f"of format {detection.format})"
            )
        self.host.first_result("check_lora", base=base, lora=detection)
        if name is not None and self.store.lora_name_taken(name):
            raise Conflict(f"a LoRA named {name!r} already exists; choose another --name")
        name = name or self.unique_name(default_name(detection.path), self.store.lora_name_taken)
        return self.store.add_lora(lora_record(detection, base, name, weight=weight))

    def set_lora_weight(self, ref: str, weight: float) -> Lora:
        """Change the strength a LoRA is loaded with when a load names no weight of its own."""
        lora = self.store.get_lora(ref)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight):
            raise InvalidSetting(f"LoRA {lora.name}: the weight must be a number, not {weight!r}")
        return self.store.update_lora(attrs.evolve(lora, weight=float(weight)))

    # --- components ------------------------------------------------------------------------------

    def add_component(self, ref: str, kind: ComponentKind, path: Path) -> Model:
        """Attach (or replace) a component after checking it is the kind it claims to be."""
        model = self.store.get_model(ref)
        if kind in (ComponentKind.MMPROJ, ComponentKind.DRAFT) and not (
            model.format == Format.GGUF and model.category in (Category.CHAT, Category.MULTIMODAL)
        ):
            what = "an mmproj" if kind == ComponentKind.MMPROJ else "a draft"
            raise Incompatible(f"{model.name}: {what} attaches to a GGUF chat model, not {a_or_an(model.category)} model")
        return self.store.update_model(with_component(model, self._checked_component(model, kind, path)))

    def _checked_component(self, model: Model, kind: ComponentKind, path: Path) -> Component:
        """The component record for ``path`` after checking it is a ``kind`` that fits ``model``."""
        if kind in IMAGE_COMPONENTS and model.category != Category.IMAGE:
            raise Incompatible(f"{model.name}: {a_or_an(kind)} component attaches to an image model, not {model.category}")
        detection = self.detect(path)
        if kind == ComponentKind.DRAFT:
            return self._checked_draft(model, detection)
        found = detection.component if detection.kind == Kind.COMPONENT else detection.kind
        # CLIP-L and CLIP-G differ only by width (768, 1280); a CLIP of another width is whichever the user says.
        clip_either = {kind, found} <= {ComponentKind.CLIP_L, ComponentKind.CLIP_G} and (
            detection.facts.hidden_size not in (768, 1280))
        if found != kind and not clip_either:
            raise Incompatible(f"{detection.path} is not {a_or_an(kind)} component (detected: {found})")
        return Component(kind=kind, path=detection.path, size=detection.size, facts=detection.facts)

    def _checked_draft(self, model: Model, detection: Detection) -> Component:
        """A draft model for speculative decoding: a GGUF language model whose vocabulary (tokenizer model
        and size, from the GGUF headers) is the base's, since the base checks the draft's tokens."""
        if detection.kind != Kind.MODEL or detection.format != Format.GGUF or detection.category not in (
                Category.CHAT, Category.MULTIMODAL):
            what = detection.component if detection.kind == Kind.COMPONENT else detection.category or detection.kind
            raise Incompatible(f"{detection.path} is not a GGUF language model (detected: {what} "
                               f"{detection.format}); a draft is a small GGUF chat model")
        base = model.facts
        if base.vocab_size is None or "tokenizer" not in base.extra:  # a record from before these facts
            base = self.detect(Path(model.path)).facts
        mine = detection.facts
        theirs = (base.vocab_size, base.extra.get("tokenizer"))  # (vocabulary size, tokenizer model)
        ours = (mine.vocab_size, mine.extra.get("tokenizer"))
        if None in (*theirs, *ours) or ours[1] != theirs[1] or abs(ours[0] - theirs[0]) > DRAFT_VOCAB_SLACK:
            raise Incompatible(
                f"{detection.path} cannot draft for {model.name}: its vocabulary is {ours[0]} tokens "
                f"({ours[1]} tokenizer), {model.name}'s is {theirs[0]} ({theirs[1]}); a draft needs the "
                "base's vocabulary (a smaller model of the same family)")
        return Component(kind=ComponentKind.DRAFT, path=detection.path, size=detection.size, facts=detection.facts)

    def remove_component(self, ref: str, kind: ComponentKind) -> Model:
        model = self.store.get_model(ref)
        if model.component(kind) is None:
            raise NotFound(f"{model.name} has no {kind} component")
        components = tuple(c for c in model.components if c.kind != kind)
        category = Category.CHAT if kind == ComponentKind.MMPROJ else model.category
        return self.store.update_model(attrs.evolve(model, components=components, category=category))

    # --- settings --------------------------------------------------------------------------------

    def setting_specs(self, model: Model) -> tuple[dict[str, SettingSpec], str]:
        """The settings ``model`` knows (the core's and its installed drivers'), and, when no driver is
        installed for it, the hint naming the plugin that adds its own."""
        drivers = self.host.drivers_for(model)
        hint = ""
        if not drivers:
            dist = known.driver_distribution(model.category, model.format)
            hint = f"; install {dist} for its own settings" if dist else ""
        return merged_specs(s for d in drivers for s in d.settings), hint

    def update_settings(
        self,
        ref: str,
        updates: Mapping[str, Any],
        *,
        unset: Sequence[str] = (),
        reset: bool = False,
    ) -> Model:
        """Save load settings for a model; they apply at its next load."""
        model = self.store.get_model(ref)
        specs, hint = self.setting_specs(model)
        current = {} if reset else model.settings
        settings = apply_updates(current, updates, unset, specs, model.name, hint, model=model)
        if settings == dict(model.settings):
            return model
        return self.store.update_model(attrs.evolve(model, settings=settings))


def open_library(home: Path | None = None, host: PluginHost | None = None) -> Library:
    """The library under ``home`` (default ``CORRAL_HOME``) with ``host`` (default: the process-wide
    plugin host, loaded when first needed)."""
    home = home or corral_home()
    os.makedirs(home, exist_ok=True)
    return Library(Store(home / "library.db"), host)

