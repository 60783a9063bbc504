"""Hardware commands: ``env`` (what is installed and usable), ``monitor`` (CPU, memory, GPUs), ``fit``
(a model's memory estimate against free memory), ``recommend`` and ``catalog`` (models that fit)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from corral.cli.base import MODEL_NAME, App, emit_json, human_count, human_size, json_option, pass_app, table
from corral.errors import InvalidSetting
from corral.records import Category, Format

CATEGORY = click.Choice([c.value for c in Category])
GB = 1000**3


# --- env ---------------------------------------------------------------------------------------------


@click.command("env")
@json_option
@pass_app
def env_cmd(app: App, as_json) -> None:
    """Check each plugin's backend (version, acceleration), the GPUs, and what every category needs."""
    from corral.monitor.env import environment

    report = environment(app.host)
    if as_json:
        emit_json(report)
        return
    click.echo(f"Python {report.python} on {report.platform}")
    click.echo("\nPlugins")
    for plugin in report.plugins:
        origin = "built-in" if plugin.builtin else f"{plugin.distribution or '?'} {plugin.version or ''}".strip()
        click.echo(f"  {plugin.name} ({origin}): {plugin.status}" + (f" — {plugin.error}" if plugin.error else ""))
        for backend in plugin.backends:
            s = backend.status
            if s.available:
                line = f"{s.version or 'installed'}" + (f"; {', '.join(s.acceleration)}" if s.acceleration else "")
            else:
                line = f"NOT USABLE: {s.problem}" + (f" — fix: {s.install}" if s.install else "")
            click.echo(f"    {backend.kind} {s.name}: {line}")
            if s.available and s.advice:
                click.echo(f"      advice: {s.advice}")
    if report.gpus:
        click.echo("\nGPUs")
        for gpu in report.gpus:
            click.echo(f"  {gpu.vendor} {gpu.index}: {gpu.name}, {human_size(gpu.vram_total)}")
    else:
        click.echo("\nGPUs: none found")
    click.echo("\nCategories")
    rows = [
        (f"{c.category} ({c.format})", ", ".join(c.drivers) if c.usable
         else "not usable: " + "; ".join(str(p) for p in (c.problem, c.install) if p))
        for c in report.categories
    ]
    rows += [(f"download from {h.source}", "ok" if h.usable else f"not usable: {h.install or 'its plugin failed'}")
             for h in report.hubs]
    width = max(len(r[0]) for r in rows)
    for name, state in rows:
        click.echo(f"  {name.ljust(width)}  {state}")


# --- monitor -----------------------------------------------------------------------------------------


def _bar(share: float | None, width: int = 20) -> str:
    if share is None:
        return ""
    filled = max(0, min(width, round(share / 100 * width)))
    return "[" + "#" * filled + "." * (width - filled) + "]"


def status_lines(status) -> list[str]:
    """The human view of one :class:`SystemStatus`."""
    from corral.monitor import percent

    lines = [
        f"CPU     {_bar(status.cpu_percent)} {status.cpu_percent:5.1f} %",
        f"Memory  {_bar(status.memory_percent)} {status.memory_percent:5.1f} %  "
        f"{status.memory_used / GB:.1f} / {status.memory_total / GB:.1f} GB",
    ]
    for gpu in status.gpus:
        share = percent(gpu.vram_used, gpu.vram_total)
        vram = (f"{_bar(share)} {share:5.1f} %  {(gpu.vram_used or 0) / GB:.1f} / {gpu.vram_total / GB:.1f} GB"
                if share is not None else f"{human_size(gpu.vram_total)} VRAM" if gpu.vram_total else "VRAM unknown")
        extra = [f"{gpu.temperature:.0f} °C" if gpu.temperature is not None else "",
                 f"busy {gpu.utilization:.0f} %" if gpu.utilization is not None else ""]  # fmt: skip
        lines.append(f"GPU {gpu.index}   {vram}  {gpu.name}  " + "  ".join(e for e in extra if e))
    for warning in status.warnings:
        lines.append(f"WARNING: {warning}")
    return [line.rstrip() for line in lines]


@click.command("monitor")
@click.option("--once", is_flag=True, help="Print one reading and exit.")
@click.option("--interval", type=click.FloatRange(min=0.2), default=2.0, show_default=True,
              help="Seconds between readings.")  # fmt: skip
@click.option("--warn", "warn_percent", type=click.FloatRange(0, 100, min_open=True),
              help="Warn at this memory use, percent (default: CORRAL_MEMORY_WARN or 90).")  # fmt: skip
@json_option
@pass_app
def monitor_cmd(app: App, once, interval, warn_percent, as_json) -> None:
    """Show CPU use, memory and each GPU's memory and temperature, refreshing until Ctrl-C.

    With --json, prints one JSON document (with --once) or one per line per reading.
    """
    from corral.convert import to_data
    from corral.monitor import system_status, warn_threshold

    threshold = warn_threshold(warn_percent)
    if once:
        status = system_status(app.host, warn_percent=threshold, interval=0.2)
        if as_json:
            emit_json(status)
        else:
            click.echo("\n".join(status_lines(status)))
        return
    sample: float | None = 0.2  # the first CPU reading needs a sample; later ones compare with the last
    try:
        while True:
            status = system_status(app.host, warn_percent=threshold, interval=sample)
            sample = None
            if as_json:
                click.echo(json.dumps(to_data(status)))
            else:
                click.clear()
                click.echo(time.strftime("%H:%M:%S") + f"  (every {interval:g} s; Ctrl-C to stop)")
                click.echo("\n".join(status_lines(status)))
            time.sleep(interval)
    except KeyboardInterrupt:
        pass


# --- fit ---------------------------------------------------------------------------------------------


def _clean(settings) -> dict:
    return {k: v for k, v in dict(settings).items() if v is not None}


def _same_settings(a, b) -> bool:
    return json.dumps(_clean(a), sort_keys=True, default=str) == json.dumps(_clean(b), sort_keys=True, default=str)


def fit_report(library, ref: str, overrides: dict, lora_refs=()) -> dict:
    """The estimate for ``ref`` with its saved settings plus ``overrides``, beside free and measured memory."""
    from corral.convert import to_data
    from corral.estimate import estimate_memory, free_memory
    from corral.loading.fit import shortfalls
    from corral.settings import apply_updates, merged_specs

    model = library.store.get_model(ref)
    specs = merged_specs(s for d in library.host.drivers_for(model) for s in d.settings)
    settings = apply_updates(model.settings, overrides, (), specs, model.name)
    loras = [library.store.get_lora(r) for r in lora_refs]
    estimate = estimate_memory(model, settings, loras=loras)
    free_ram, free_vram = free_memory()
    problems = shortfalls(estimate, free_ram, free_vram)
    if estimate.vram_bytes and free_vram is None:  # the load would run it from system memory instead
        problems.insert(0, f"asks for {human_size(estimate.vram_bytes)} of GPU memory and no GPU was found")
    measured = next((m for m in library.store.measurements(model.id) if _same_settings(m.settings, settings)), None)
    return {
        "model": model.name,
        "id": model.id,
        "settings": settings,
        **{k: v for k, v in to_data(estimate).items()},
        "free_ram_bytes": free_ram,
        "free_vram_bytes": free_vram,
        "fits": not problems,
        "problems": problems,
        "measured": None if measured is None else {"ram_bytes": measured.ram, "vram_bytes": measured.vram,
                                                   "total_bytes": measured.ram + measured.vram,
                                                   "measured": measured.measured.isoformat()},
    }  # fmt: skip


def _pairs(pairs) -> dict:
    updates = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise InvalidSetting(f"--set wants NAME=VALUE, got {pair!r}")
        updates[name.strip()] = value
    return updates


@click.command("fit")
@click.argument("model", type=MODEL_NAME)
@click.option("--n-ctx", type=click.IntRange(min=0), help="Context length (0 = the model's own).")
@click.option("--n-gpu-layers", type=click.IntRange(min=-1), help="Layers on the GPU (-1 = all).")
@click.option("--lora", "loras", multiple=True, metavar="NAME", help="LoRA loaded with it.")
@click.option("--set", "pairs", multiple=True, metavar="NAME=VALUE", help="Any other load setting.")
@json_option
@pass_app
def fit_cmd(app: App, model, n_ctx, n_gpu_layers, loras, pairs, as_json) -> None:
    """Estimate MODEL's memory with its saved settings (and these), against what is free now."""
    overrides = _pairs(pairs)
    overrides.update({k: v for k, v in (("n_ctx", n_ctx), ("n_gpu_layers", n_gpu_layers)) if v is not None})
    report = fit_report(app.library, model, overrides, loras)
    if as_json:
        click.echo(json.dumps(report, indent=2, default=str))
        return
    shown = ", ".join(f"{k}={v}" for k, v in sorted(report["settings"].items())) or "saved defaults"
    click.echo(f"{report['model']} ({shown})")
    size = lambda n: human_size(n) if n else "0"  # noqa: E731
    context = f", context {report['n_ctx']} tokens" if report["n_ctx"] else ""
    click.echo(f"  estimate  {size(report['total_bytes'])}: RAM {size(report['ram_bytes'])}, "
               f"GPU {size(report['vram_bytes'])}{context}")  # fmt: skip
    for part, nbytes in report["parts_bytes"].items():
        if nbytes:
            click.echo(f"    {part.replace('_', ' '):<10} {human_size(nbytes):>9}")
    for note in report["notes"]:
        click.echo(f"    note: {note}")
    gpu = human_size(report["free_vram_bytes"]) if report["free_vram_bytes"] is not None else "no GPU"
    click.echo(f"  free      RAM {human_size(report['free_ram_bytes'])}, GPU {gpu}")
    m = report["measured"]
    if m:
        click.echo(f"  measured  {size(m['total_bytes'])}: RAM {size(m['ram_bytes'])}, "
                   f"GPU {size(m['vram_bytes'])} (last load, {m['measured']})")  # fmt: skip
    else:
        click.echo("  measured: none yet (a load with these settings records it)")
    click.echo("  fits: yes" if report["fits"] else "  fits: NO — " + "; ".join(report["problems"]))


# --- recommend and catalog ---------------------------------------------------------------------------


def _pull_command(entry, quant) -> str:
    if entry.format == Format.GGUF:
        return f"corral pull {entry.repo} --quant {quant.name}"
    return f"corral pull {entry.repo}"


def _budget(memory_gb: float | None) -> int:
    if memory_gb is not None:
        return int(memory_gb * GB)
    from corral.estimate import free_memory

    ram, vram = free_memory()
    return ram + (vram or 0)


@click.command("recommend")
@click.option("--memory", "memory_gb", type=click.FloatRange(min=0, min_open=True),
              help="Memory to fit in, GB (default: free now).")  # fmt: skip
@click.option("--prefer", type=click.Choice(["quality", "size"]), default="quality", show_default=True)
@click.option("--category", type=CATEGORY, help="Only models of this category.")
@click.option("--n-ctx", type=click.IntRange(min=1), help="Context to estimate with (default: 4096 or the model's).")
@click.option("--limit", type=click.IntRange(min=1), default=5, show_default=True)
@json_option
@pass_app
def recommend_cmd(app: App, memory_gb, prefer, category, n_ctx, limit, as_json) -> None:
    """The catalog models that fit in memory, best first, each with its estimate."""
    from corral.catalog import load_catalog
    from corral.catalog.recommend import recommend
    from corral.convert import to_data

    budget = _budget(memory_gb)
    entries = load_catalog(app.host).select(category=category)
    picks = recommend(entries, budget, prefer=prefer, limit=limit, settings={"n_ctx": n_ctx} if n_ctx else None)
    if as_json:
        emit_json({
            "budget_bytes": budget, "prefer": prefer,
            "recommendations": [{
                "id": r.entry.id, "name": r.entry.name, "category": r.entry.category.value,
                "format": r.entry.format.value, "repo": r.entry.repo, "quant": r.quant.name,
                "pattern": r.quant.pattern, "parameters": r.entry.parameters,
                "estimate": to_data(r.estimate), "pull": _pull_command(r.entry, r.quant),
            } for r in picks],
        })  # fmt: skip
        return
    if not picks:
        where = f" for {category}" if category else ""
        click.echo(f"Nothing in the catalog fits in {human_size(budget)}{where}.")
        return
    click.echo(f"Fits in {human_size(budget)}, by {prefer}:")
    table(
        [(i, r.entry.id, r.entry.category, r.quant.name, human_count(r.entry.parameters),
          human_size(r.estimate.total_bytes), _pull_command(r.entry, r.quant)) for i, r in enumerate(picks, 1)],
        ["#", "MODEL", "CATEGORY", "QUANT", "PARAMS", "ESTIMATE", "GET IT"],
    )  # fmt: skip


@click.group("catalog")
def catalog_group() -> None:
    """Browse and extend the catalog of known models (`corral recommend` chooses from it)."""


@catalog_group.command("ls")
@click.option("--category", type=CATEGORY)
@click.option("--family")
@json_option
@pass_app
def catalog_ls(app: App, category, family, as_json) -> None:
    """List catalog entries."""
    from corral.catalog import load_catalog

    entries = load_catalog(app.host).select(category=category, family=family)
    if as_json:
        emit_json(entries)
        return
    table(
        [(e.id, e.category, e.format, human_count(e.parameters), e.context_length or "-",
          ",".join(q.name for q in e.quantizations), e.repo, e.origin) for e in entries],
        ["ID", "CATEGORY", "FORMAT", "PARAMS", "CONTEXT", "QUANTS", "REPO", "FROM"],
    )  # fmt: skip


@catalog_group.command("show")
@click.argument("entry_id")
@click.option("--n-ctx", type=click.IntRange(min=1), help="Context to estimate with.")
@json_option
@pass_app
def catalog_show(app: App, entry_id, n_ctx, as_json) -> None:
    """One catalog entry with the memory estimate of each of its quantizations."""
    from corral.catalog import load_catalog
    from corral.catalog.estimate import estimate_entry
    from corral.convert import to_data

    entry = load_catalog(app.host).get(entry_id)
    settings = {"n_ctx": n_ctx} if n_ctx else None
    estimates = {q.name: estimate_entry(entry, q, settings) for q in entry.quantizations}
    if as_json:
        emit_json({**to_data(entry), "estimates": {k: to_data(v) for k, v in estimates.items()}})
        return
    click.echo(f"{entry.name} [{entry.id}] — {entry.category}, {entry.format}, from {entry.origin}")
    if entry.description:
        click.echo(f"  {entry.description}")
    click.echo(f"  repo {entry.repo} ({entry.source}); {human_count(entry.parameters)} parameters"
               + (f"; context {entry.context_length}" if entry.context_length else ""))  # fmt: skip
    table(
        [(q.name, f"{q.bits:g}", q.pattern, human_size(estimates[q.name].total_bytes), _pull_command(entry, q))
         for q in entry.quantizations],
        ["QUANT", "BITS", "FILES", "ESTIMATE", "GET IT"],
    )  # fmt: skip


def _count(text: str) -> int:
    """A parameter count: 1234567, 1.5B, 270M, 82k."""
    scale = {"k": 1e3, "m": 1e6, "b": 1e9, "t": 1e12}.get(text[-1:].lower(), 1)
    number = text[:-1] if scale != 1 else text
    try:
        return int(float(number.replace("_", "").replace(",", "")) * scale)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a parameter count (e.g. 7B, 270M, 1234567)") from None


def _quant(text: str):
    """NAME[:BITS][=PATTERN] -> CatalogQuant (bits from the known table when not given)."""
    from corral.catalog.quants import known_bits
    from corral.records import CatalogQuant

    head, _, pattern = text.partition("=")
    name, _, bits = head.partition(":")
    try:
        value = float(bits) if bits else known_bits(name)
    except ValueError:
        value = None
    if not name or value is None:
        raise click.BadParameter(f"{text!r}: give NAME:BITS[=PATTERN] (bits per weight unknown for {name!r})")
    return CatalogQuant(name=name, bits=value, pattern=pattern)


@catalog_group.command("add")
@click.argument("file", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--id", "entry_id")
@click.option("--family")
@click.option("--name")
@click.option("--category", type=CATEGORY)
@click.option("--format", "fmt", type=click.Choice([f.value for f in Format]), default="gguf", show_default=True)
@click.option("--repo", help="Hub repository id (owner/name).")
@click.option("--source", default="huggingface", show_default=True)
@click.option("--parameters", help="Parameter count: 7B, 270M or a number.")
@click.option("--context-length", type=click.IntRange(min=1))
@click.option("--quant", "quants", multiple=True, metavar="NAME[:BITS][=PATTERN]", help="A downloadable variant.")
@click.option("--layers", type=click.IntRange(min=1))
@click.option("--hidden-size", type=click.IntRange(min=1))
@click.option("--ffn-size", type=click.IntRange(min=1))
@click.option("--heads", type=click.IntRange(min=1))
@click.option("--kv-heads", type=click.IntRange(min=1))
@click.option("--head-dim", type=click.IntRange(min=1))
@click.option("--vocab-size", type=click.IntRange(min=1))
@click.option("--description", default="")
@json_option
@pass_app
def catalog_add(app: App, file, entry_id, family, name, category, fmt, repo, source, parameters, context_length,
                quants, layers, hidden_size, ffn_size, heads, kv_heads, head_dim, vocab_size, description,
                as_json) -> None:  # fmt: skip
    """Add your own entries: from FILE (JSON, as `catalog show --json` prints) or from the options."""
    from corral.catalog import CatalogError, check_entry, load_catalog, parse_entries
    from corral.records import CatalogEntry

    if file is not None:
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise CatalogError(f"{file}: not valid JSON ({exc})") from None
        entries = parse_entries(data, str(file), "user")
    else:
        missing = [opt for opt, value in (("--id", entry_id), ("--category", category), ("--repo", repo),
                                          ("--parameters", parameters), ("--quant", quants)) if not value]  # fmt: skip
        if missing:
            raise CatalogError(f"catalog add needs a FILE or the options {', '.join(missing)}")
        entry = CatalogEntry(
            id=entry_id.lower(), family=family or entry_id.split("-")[0].lower(), name=name or entry_id,
            category=Category(category), format=Format(fmt), repo=repo, source=source,
            parameters=_count(parameters), context_length=context_length,
            quantizations=tuple(_quant(q) for q in quants), description=description, layers=layers,
            hidden_size=hidden_size, ffn_size=ffn_size, heads=heads, kv_heads=kv_heads, head_dim=head_dim,
            vocab_size=vocab_size, origin="user",
        )  # fmt: skip
        entries = [check_entry(entry, "catalog add")]
    added = load_catalog(app.host).add(entries)
    if as_json:
        emit_json(added)
        return
    for entry in added:
        click.echo(f"Added {entry.id} to your catalog.")


@catalog_group.command("rm")
@click.argument("entry_id")
@pass_app
def catalog_rm(app: App, entry_id) -> None:
    """Remove one of your own catalog entries."""
    from corral.catalog import load_catalog

    entry = load_catalog(app.host).remove(entry_id)
    click.echo(f"Removed {entry.id} from your catalog.")


COMMANDS = (env_cmd, monitor_cmd, fit_cmd, recommend_cmd, catalog_group)
