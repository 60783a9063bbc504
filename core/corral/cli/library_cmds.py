"""Library commands: import, scan, ls, show, edit, rm."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from corral.cli.base import CATEGORY, MODEL_NAME, App, emit_json, human_count, human_size, json_option, pass_app, table
from corral.errors import CorralError



def print_model(model, detection=None) -> None:
    """The human view of one model (and, at import, the detection's reasons)."""
    facts = model.facts.nonempty()
    rows = [
        ("id", model.id),
        ("name", model.name),
        ("category", model.category),
        ("format", model.format),
        ("path", model.path),
        ("size", human_size(model.size)),
    ]
    if model.description:
        rows.append(("description", model.description))
    extra = facts.pop("extra", {})
    for key, value in facts.items():
        if key == "parameters":
            value = f"{human_count(value)} ({value})"
        elif isinstance(value, tuple):
            value = ", ".join(map(str, value))
        rows.append((key.replace("_", " "), value))
    for key in ("sliding_window", "template"):  # tags: the record's own, below (editable)
        if key in extra:
            rows.append((key.replace("_", " "), extra[key]))
    if model.tags:
        rows.append(("tags", ", ".join(model.tags)))
    for component in model.components:
        rows.append((f"component {component.kind}", component.path))
    for copy in model.copies:
        rows.append(("copy", copy))
    if model.missing:
        rows.append(("status", f"missing: files are gone (restore them; if they moved, `corral edit {model.name} "
                               f"--path NEW_PATH`; or `corral rm` the record)"))
    if model.settings:
        rows.append(("settings", ", ".join(f"{k}={v}" for k, v in sorted(model.settings.items()))))
    if model.unsafe:
        rows.append(("UNSAFE", model.unsafe))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        click.echo(f"  {key.ljust(width)}  {value}")
    # Detection's verdict: the import's own, else what the record kept of it.
    confidence = detection.confidence if detection is not None else model.confidence
    reasons = detection.reasons if detection is not None else model.reasons
    if confidence is not None or reasons:
        shown = f"confidence {confidence:.2f}" if confidence is not None else "detected"
        click.echo(f"  {shown}; because:" if reasons else f"  {shown}")
        for reason in reasons:
            click.echo(f"    - {reason}")


def model_document(app: App, record, **extra) -> dict:
    """The one JSON shape of a model that ``show``, ``edit`` and ``import`` print: the record under
    ``model``, its LoRA records and the driver that would load it (``extra`` adds a command's own keys)."""
    if record is None:
        return {"model": None, "loras": [], "driver": None, **extra}
    loras = app.library.store.list_loras(record.id)
    try:
        from corral.loading import choose_driver

        driver = getattr(choose_driver(app.library.host, record), "name", None)
    except CorralError as exc:  # a driver setting naming a driver that cannot load it
        driver = f"none ({exc})"
    return {"model": record, "loras": loras, "driver": driver, **extra}


@click.command("import")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--category", type=CATEGORY, help="Override the detected category.")
@click.option("--name", help="Library name (default: the model's own name from its metadata, else the file name).")
@click.option("--description", default="", help="Free text shown by `corral show`.")
@click.option(
    "--allow-unsafe",
    is_flag=True,
    help="Record a pickle checkpoint that imports non-allow-listed code (never unpickled by Corral; "
    "loaded only through torch's weights_only loader).",
)
@click.option("--template", type=click.Choice(["sd_official", "flux", "video"]),
              help="Image model assembled from separate files: sd_official (VAE + CLIP-L + CLIP-G), "
              "flux (VAE + CLIP-L + T5-XXL), video (Wan; VAE).")
@click.option("--vae", type=click.Path(path_type=Path), help="VAE file or folder (image models).")
@click.option("--clip-l", "clip_l", type=click.Path(path_type=Path), help="CLIP-L text encoder (image models).")
@click.option("--clip-g", "clip_g", type=click.Path(path_type=Path), help="CLIP-G text encoder (image models).")
@click.option("--t5xxl", type=click.Path(path_type=Path), help="T5-XXL (or Wan's UMT5) text encoder (image models).")
@click.option("--tag", "--capability", "tags", multiple=True, metavar="TAG",
              help="Capability tag, repeatable: text-to-image, image-to-image, video (default: detected).")
@click.option("--as-variant", is_flag=True,
              help="When the file is already in the library, add a second record over the same files (its own "
              "name, settings and history) instead of refusing.")
@json_option
@pass_app
def import_cmd(app: App, path, category, name, description, allow_unsafe, template, vae, clip_l, clip_g, t5xxl,
               tags, as_variant, as_json) -> None:
    """Detect PATH (a file or model directory) and add it to the library, in place."""
    from corral.records import ComponentKind

    parts = {ComponentKind(kind): p for kind, p in (("vae", vae), ("clip-l", clip_l), ("clip-g", clip_g),
                                                     ("t5xxl", t5xxl)) if p is not None}
    result = app.library.import_path(
        path,
        category=category,
        name=name,
        description=description,
        allow_unsafe=allow_unsafe,
        template=template,
        components=parts,
        tags=tags or None,
        as_variant=as_variant,
    )
    if as_json:
        variant = {"variant_of": result.variant_of} if result.variant_of else {}  # only when one was made
        emit_json(model_document(app, result.model, detection=result.detection, offer=result.offer,
                                 candidates=result.candidates, **variant))
        return
    if result.model is None:
        click.echo(result.offer)
        if result.candidates:
            click.echo("Models in the library it fits: " + ", ".join(result.candidates))
        return
    if result.variant_of:
        click.echo(f"Imported {result.model.name}, a variant of {result.variant_of} over the same files")
    else:
        click.echo(f"Imported {result.model.name}")
    print_model(result.model, result.detection)


@click.command("scan")
@click.argument("directory", required=False, type=click.Path(path_type=Path))
@click.option("--hf-cache", "layout", flag_value="hf-cache", help="The Hugging Face cache (HF_HUB_CACHE, HF_HOME/hub).")
@click.option("--ollama", "layout", flag_value="ollama", help="Ollama's models (OLLAMA_MODELS, ~/.ollama/models).")
@click.option("--lmstudio", "layout", flag_value="lmstudio", help="LM Studio's models (~/.lmstudio/models).")
@click.option("--layout", "layout", metavar="NAME",
              help="Another store layout a plugin registered (`corral plugins` lists them).")
@click.option("--dry-run", is_flag=True, help="Show what would be added; change nothing.")
@click.option("--allow-unsafe", is_flag=True, help="Also record unsafe pickle checkpoints.")
@json_option
@pass_app
def scan_cmd(app: App, directory, layout, dry_run, allow_unsafe, as_json) -> None:
    """Adopt every model under DIRECTORY in place (no copy); re-scanning adds nothing new.

    With --hf-cache, --ollama or --lmstudio (or --layout NAME for a plugin's), read that tool's store
    (DIRECTORY overrides where it is).
    Records whose files vanished are reported as missing, never dropped.
    """
    from corral.adopt import scan

    entries = scan(app.library, directory, layout=layout, dry_run=dry_run, allow_unsafe=allow_unsafe)
    added = sum(e.status in ("added", "would-add") for e in entries)
    missing = sum(e.status == "missing" for e in entries)
    if as_json:
        counts: dict[str, int] = {}
        for e in entries:
            counts[e.status] = counts.get(e.status, 0) + 1
        emit_json({"summary": {"added": added, "missing": missing, "looked_at": len(entries), "dry_run": dry_run,
                               "statuses": counts},
                   "entries": entries})
        return
    table([(e.status, e.name or "", e.category or "", e.path) for e in entries], ["STATUS", "NAME", "CATEGORY", "PATH"])
    for e in entries:
        if e.message:
            click.echo(f"{e.path}: {e.message}", err=True)
    gone = f", {missing} missing" if missing else ""
    known = sum(e.status in ("exists", "copy") for e in entries)
    known_text = f", {known} already in the library (duplicates skipped)" if known else ""
    click.echo(f"{added} model(s) {'would be added' if dry_run else 'added'}{known_text}{gone}, "
               f"{len(entries)} path(s) looked at.")


@click.command("ls")
@click.option("--category", type=CATEGORY, help="Only this category.")
@json_option
@pass_app
def ls_cmd(app: App, category, as_json) -> None:
    """List the models in the library."""
    from corral.manifests.files import library_tally, with_missing

    models = [with_missing(m) for m in app.store.list_models(category)]
    if as_json:
        emit_json(models)
        return
    if not models:
        click.echo("No models yet. Add one: corral import PATH")
        return
    rows = [
        (
            m.id,
            m.name,
            m.category,
            m.format,
            m.facts.architecture or "",
            m.facts.quantization or m.facts.dtype or "",
            human_size(m.size),
            "missing" if m.missing else "",
        )
        for m in models
    ]
    table(rows, ["ID", "NAME", "CATEGORY", "FORMAT", "ARCH", "QUANT", "SIZE", "STATUS"])
    listed = {m.id for m in models}
    total = library_tally(models, [l for l in app.store.list_loras() if l.base_id in listed])
    click.echo(f"{len(models)} model(s), {human_size(total.bytes) if total.bytes else '0 B'} on disk "
               "(a file shared or hard-linked counts once)")


@click.command("show")
@click.argument("model", type=MODEL_NAME)
@json_option
@pass_app
def show_cmd(app: App, model, as_json) -> None:
    """Show everything the library knows about MODEL (id or name)."""
    record = app.library.check_files(app.library.store.get_model(model))
    document = model_document(app, record)
    if as_json:
        emit_json(document)
        return
    print_model(record)
    click.echo(f"  driver: {document['driver'] or 'none installed for it'}")
    for lora in document["loras"]:
        click.echo(f"  lora {lora.name}  {lora.path}  (weight {lora.weight})")


@click.command("edit")
@click.argument("model", type=MODEL_NAME)
@click.option("--name", help="New unique name.")
@click.option("--description", help="New description.")
@click.option("--tag", "tags", multiple=True, metavar="TAG", help="Add a capability tag (repeatable).")
@click.option("--untag", multiple=True, metavar="TAG", help="Remove a capability tag (repeatable).")
@click.option("--path", "new_path", type=click.Path(path_type=Path),
              help="The model's files moved here: repoint the record (checked to be the same kind of model).")
@json_option
@pass_app
def edit_cmd(app: App, model, name, description, tags, untag, new_path, as_json) -> None:
    """Rename MODEL, change its description or its capability tags, or repoint it at moved files.

    --path is checked first: detection must find the same format, category and architecture there;
    the record keeps its id, name, settings and LoRAs.

    \b
    Examples:
      corral edit gemma3 --name gemma3-small --description "tiny chat model"
      corral edit gemma3 --path /mnt/models/gemma-3-270m-q4_k_m.gguf
    """
    if new_path is not None:
        model = app.library.relink(model, new_path).id
    record = app.library.edit(model, name=name, description=description)
    if tags or untag:
        record = app.library.retag(record.id, add=tags, remove=untag)
    if as_json:
        emit_json(model_document(app, record))
    elif new_path is not None:
        click.echo(f"Saved {record.name}: its files are now at {record.path}.")
    else:
        click.echo(f"Saved {record.name}.")


@click.command("rm")
@click.argument("model", type=MODEL_NAME)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@json_option
@pass_app
def rm_cmd(app: App, model, yes, as_json) -> None:
    """Remove MODEL's record (and its LoRA records). Files on disk are kept.

    Asks for confirmation when run on a terminal; --yes skips the question.
    """
    record = app.library.store.get_model(model)
    loras = app.library.store.list_loras(record.id)
    if not yes and sys.stdin.isatty():
        extra = f" and its {len(loras)} LoRA record(s)" if loras else ""
        click.confirm(f"Remove {record.name}{extra} from the library (files stay on disk)?", abort=True)
    removed, removed_loras = app.library.remove(record.id)
    if as_json:
        emit_json({"removed": removed, "loras": removed_loras})
    else:
        click.echo(f"Removed {removed.name} ({len(removed_loras)} LoRA record(s)); files left at {removed.path}")


@click.command("cp")
@click.argument("model", type=MODEL_NAME)
@click.argument("new")
@click.option("--system", help="The copy's own system prompt (its saved system_prompt setting).")
@click.option("--set", "pairs", multiple=True, metavar="KEY=VALUE",
              help="A setting of the copy's own (repeatable), as `corral settings NEW --set` takes.")
@json_option
@pass_app
def cp_cmd(app: App, model, new, system, pairs, as_json) -> None:
    """Copy MODEL to NEW: a second record over the same files, like `ollama cp`.

    NEW starts with MODEL's settings, components and facts, and then has its own name, settings, system
    prompt and history; no file is copied (links in CORRAL_HOME/copies/). Removing either record keeps
    every file. The settings are checked before anything is written.
    """
    from corral.cli.parts_cmds import parse_pairs

    settings = parse_pairs(pairs)
    if system is not None:
        settings["system_prompt"] = system
    record = app.library.copy(model, new, settings=settings)
    if as_json:
        emit_json(model_document(app, record, variant_of=app.library.store.get_model(model).name))
        return
    click.echo(f"Copied {model} to {record.name} (the same files; its own settings and history).")


COMMANDS = (import_cmd, scan_cmd, ls_cmd, show_cmd, edit_cmd, rm_cmd, cp_cmd)
