"""Commands for what hangs off a model: LoRA adapters, components, saved load settings."""

from __future__ import annotations

from pathlib import Path

import click

from corral.cli.base import LORA_NAME, MODEL_NAME, App, emit_json, human_size, json_option, pass_app, table
from corral.records import ComponentKind


@click.group("lora")
def lora_group() -> None:
    """LoRA adapters bound to a base model."""


@lora_group.command("add")
@click.argument("base", type=MODEL_NAME)
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--name", help="Unique LoRA name (default: from the file name).")
@click.option("--weight", type=float, default=1.0, show_default=True, help="Default strength.")
@json_option
@pass_app
def lora_add(app: App, base, path, name, weight, as_json) -> None:
    """Bind the adapter at PATH to BASE after checking it fits (architecture and tensor shapes)."""
    lora = app.library.add_lora(base, path, name=name, weight=weight)
    if as_json:
        emit_json(lora)
    else:
        click.echo(f"Bound LoRA {lora.name} to {app.library.store.get_model(lora.base_id).name}.")


@lora_group.command("ls")
@click.argument("base", required=False, type=MODEL_NAME)
@json_option
@pass_app
def lora_ls(app: App, base, as_json) -> None:
    """List LoRAs (of BASE, or all)."""
    store = app.library.store
    base_id = store.get_model(base).id if base else None
    loras = store.list_loras(base_id)
    if as_json:
        emit_json(loras)
        return
    names = {m.id: m.name for m in store.list_models()}
    rows = [(l.id, l.name, names.get(l.base_id, l.base_id), l.format, l.weight, human_size(l.size), l.path) for l in loras]
    table(rows, ["ID", "NAME", "BASE", "FORMAT", "WEIGHT", "SIZE", "PATH"])


@lora_group.command("set")
@click.argument("lora", type=LORA_NAME)
@click.option("--weight", type=float, required=True, help="Default strength (a load may name its own).")
@json_option
@pass_app
def lora_set(app: App, lora, weight, as_json) -> None:
    """Change a LoRA's default weight."""
    record = app.library.set_lora_weight(lora, weight)
    if as_json:
        emit_json(record)
    else:
        click.echo(f"LoRA {record.name} now loads at weight {record.weight:g} by default.")


@lora_group.command("rm")
@click.argument("lora", type=LORA_NAME)
@json_option
@pass_app
def lora_rm(app: App, lora, as_json) -> None:
    """Remove a LoRA record (the file stays)."""
    record = app.library.store.get_lora(lora)
    app.library.store.delete_lora(record.id)
    if as_json:
        emit_json(record)
    else:
        click.echo(f"Removed LoRA {record.name}; file left at {record.path}")


@click.group("component")
def component_group() -> None:
    """Components attached to a model: mmproj (multimodal), draft (a small GGUF of the same vocabulary for
    speculative decoding); vae, clip-l, clip-g, t5xxl (image)."""


KIND = click.Choice([k.value for k in ComponentKind])


@component_group.command("add")
@click.argument("model", type=MODEL_NAME)
@click.argument("kind", type=KIND)
@click.argument("path", type=click.Path(path_type=Path))
@json_option
@pass_app
def component_add(app: App, model, kind, path, as_json) -> None:
    """Attach (or replace) MODEL's KIND component with the file at PATH."""
    record = app.library.add_component(model, ComponentKind(kind), path)
    if as_json:
        emit_json(record)
    else:
        click.echo(f"Attached {kind} to {record.name} (category now {record.category}).")


@component_group.command("rm")
@click.argument("model", type=MODEL_NAME)
@click.argument("kind", type=KIND)
@json_option
@pass_app
def component_rm(app: App, model, kind, as_json) -> None:
    """Detach MODEL's KIND component (the file stays)."""
    record = app.library.remove_component(model, ComponentKind(kind))
    if as_json:
        emit_json(record)
    else:
        click.echo(f"Detached {kind} from {record.name}.")


def parse_pairs(pairs) -> dict:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--set")
        out[key.strip().replace("-", "_")] = value
    return out


@click.command("settings")
@click.argument("model", type=MODEL_NAME)
@click.option("--n-ctx", type=int, help="Context length; 0 = the model's own.")
@click.option("--n-gpu-layers", type=int, help="Layers on the GPU; -1 = all.")
@click.option("--threads", type=int, help="CPU threads; 0 = automatic.")
@click.option("--set", "pairs", multiple=True, metavar="KEY=VALUE", help="Any setting the model's driver knows.")
@click.option("--unset", multiple=True, metavar="KEY", help="Drop a saved setting (back to the default).")
@click.option("--reset", is_flag=True, help="Drop every saved setting first.")
@json_option
@pass_app
def settings_cmd(app: App, model, n_ctx, n_gpu_layers, threads, pairs, unset, reset, as_json) -> None:
    """Show or change MODEL's saved load settings; a change applies at the next load.

    Without a change, every setting the model knows is listed with its default and its current value.
    Values are checked against the model: an n_ctx above the context it was trained with needs a RoPE
    setting too; a device must be auto, cpu, cuda, cuda:N or mps.

    \b
    Examples:
      corral settings gemma3
      corral settings gemma3 --n-ctx 8192 --threads 4
      corral settings gemma3 --set temperature=0.3 --unset seed
    """
    from corral.settings import describe, warnings_for

    updates = parse_pairs(pairs)
    for key, value in (("n_ctx", n_ctx), ("n_gpu_layers", n_gpu_layers), ("threads", threads)):
        if value is not None:
            updates[key] = value
    unset = [u.replace("-", "_") for u in unset]
    changing = bool(updates or unset or reset)
    if changing:
        record = app.library.update_settings(model, updates, unset=unset, reset=reset)
    else:
        record = app.library.store.get_model(model)
    specs, hint = app.library.setting_specs(record)
    rows = describe(specs, record.settings)
    warnings = warnings_for(record.settings) if changing else []
    for warning in warnings:
        click.echo(f"Warning: {record.name}: {warning}", err=True)
    if as_json:
        emit_json({"model": record.name, "id": record.id, "saved": dict(record.settings), "settings": rows,
                   "warnings": warnings})
        return
    if changing:
        shown = ", ".join(f"{k}={v}" for k, v in sorted(record.settings.items())) or "none (defaults apply)"
        click.echo(f"Saved {record.name}'s settings: {shown}")
        return
    table([(r["name"], _shown(r["value"]) if r["saved"] else "(default)", _shown(r["default"]), r["help"])
           for r in rows], ["SETTING", "CURRENT", "DEFAULT", "ABOUT"])
    if hint:
        click.echo(f"Only the core's settings are known{hint}.")


def _shown(value) -> str:
    return "-" if value is None else str(value)


COMMANDS = (lora_group, component_group, settings_cmd)
