"""Maintenance commands: manifests (``manifest sync``, ``manifest show``) and cleanup (``clean preview``,
``clean apply``, ``clean hf-cache``)."""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from pathlib import Path

import click

from corral.cli.base import CATEGORY, MODEL_NAME, App, emit_json, human_size, json_option, pass_app, table

# --- manifests -------------------------------------------------------------------------------------


@click.group("manifest")
def manifest_group() -> None:
    """Per-model manifests (provenance, files and hashes, quantization, LoRAs, disk use) in
    CORRAL_HOME/manifests/."""


@manifest_group.command("sync")
@click.argument("models", nargs=-1, type=MODEL_NAME)
@click.option("--fast", is_flag=True, help="Hash only files up to 64 MiB (and trust store names, earlier hashes).")
@json_option
@pass_app
def manifest_sync(app: App, models, fast, as_json) -> None:
    """Regenerate the manifests of MODELS (all models when none are named)."""
    from corral.manifests import sync

    results = sync(app.library, models, fast=fast)
    if as_json:
        emit_json(results)
        return
    rows = [(r.model, r.files, r.hashed, r.skipped, r.path) for r in results]
    table(rows, ["MODEL", "FILES", "HASHED", "SKIPPED", "MANIFEST"])
    for r in results:
        for problem in r.problems:
            click.echo(f"{r.model}: {problem}", err=True)
    click.echo(f"{len(results)} manifest(s) written.")


@manifest_group.command("show")
@click.argument("models", nargs=-1, type=MODEL_NAME)
@json_option
@pass_app
def manifest_show(app: App, models, as_json) -> None:
    """Show the saved manifests of MODELS (all when none are named); run `manifest sync` to refresh."""
    from corral.manifests import library_home, read_manifest

    store = app.library.store
    records = [store.get_model(m) for m in models] if models else store.list_models()
    home = library_home(app.library)
    found = [(m, read_manifest(home, m.id)) for m in records]
    if as_json:
        click.echo(json.dumps([d for _, d in found if d is not None], ensure_ascii=False, indent=2))
        return
    rows = []
    for model, data in found:
        if data is None:
            rows.append((model.name, "-", "-", "-", "-", "-", "-", "not synced"))
            continue
        prov = data.get("provenance") or {}
        source = "/".join(x for x in (prov.get("hub"), prov.get("repo")) if x) or "-"
        rev = (prov.get("revision") or "-")[:12]
        fusion = data.get("lora_fusion") or {}
        loras = fusion.get("state", "-")
        if fusion.get("unfused"):
            loras += f" ({len(fusion['unfused'])})"
        disk = (data.get("disk_usage") or {}).get("bytes")
        rows.append((model.name, source, rev, data.get("quantization") or "-", data.get("hashed", "-"), loras,
                     human_size(disk), data.get("generated", "")))
    table(rows, ["MODEL", "SOURCE", "REVISION", "QUANT", "HASHED", "LORAS", "DISK", "GENERATED"])
    synced = [d for _, d in found if d is not None]
    if len(synced) > 1:
        from corral.manifests import manifests_tally

        total = manifests_tally(synced)
        click.echo(f"{len(synced)} manifests, {human_size(total.bytes) if total.bytes else '0 B'} on disk together "
                   f"({total.files} files; one shared or hard-linked counts once).")


# --- cleanup ---------------------------------------------------------------------------------------


def _filters(func):
    for option in reversed((
        click.option("--tag", help="Models with this tag."),
        click.option("--quant", help="Models of this quantization or dtype (Q4_K_M, F16, bfloat16...)."),
        click.option("--unused-days", type=click.FloatRange(min=0), help="Not loaded or changed for N days."),
        click.option("--category", type=CATEGORY, help="Models of this category."),
        click.option("--missing", is_flag=True, help="Records whose files are gone."),
    )):
        func = option(func)
    return func


def _plan(app: App, tag, quant, unused_days, category, missing):
    from corral.clean import Filters, plan_clean

    filters = Filters(tag=tag, quant=quant, unused_days=unused_days, category=category, missing=missing)
    return plan_clean(app.library, filters)


def _age(when: datetime) -> str:
    days = (datetime.now(timezone.utc) - when).total_seconds() / 86400
    return f"{days:.0f} d" if days >= 1 else "today"


def _show_plan(plan) -> None:
    if not plan.candidates:
        click.echo("Nothing matches.")
        return
    rows = [
        (c.name, c.category, c.quantization or "", _age(c.last_used), human_size(c.frees),
         "kept" if c.blocked else "delete")
        for c in plan.candidates
    ]
    table(rows, ["MODEL", "CATEGORY", "QUANT", "LAST USED", "FREES", "ACTION"])
    for c in plan.candidates:
        if c.blocked:
            click.echo(f"  {c.name}: kept, {c.blocked}")
        for f in c.files:
            if f.action == "delete":
                why = f"; {f.reason}" if f.reason else ""
                click.echo(f"  {c.name}: delete {f.path} ({f.role}, {human_size(f.size)}{why})")
            else:
                click.echo(f"  {c.name}: keep {f.path} ({f.reason})")
    deleting = sum(not c.blocked for c in plan.candidates)
    click.echo(f"{deleting} model(s) to delete, {human_size(plan.frees) if plan.frees else '0 B'} freed.")


def on_terminal() -> bool:
    return sys.stdin.isatty()


def confirm_or_refuse(question: str, yes: bool) -> None:
    """Ask on a terminal; without one, refuse unless ``--yes`` was given (a script never deletes by default)."""
    from corral.clean import ConfirmationNeeded

    if yes:
        return
    if not on_terminal():
        raise ConfirmationNeeded("not deleting without confirmation: run this on a terminal, or pass --yes")
    click.confirm(question, abort=True)


@click.group("clean")
def clean_group() -> None:
    """Find models to delete and the space they free; delete them after confirmation."""


@clean_group.command("preview")
@_filters
@json_option
@pass_app
def clean_preview(app: App, tag, quant, unused_days, category, missing, as_json) -> None:
    """List the models the filters choose and the space deleting them frees. Nothing is deleted."""
    plan = _plan(app, tag, quant, unused_days, category, missing)
    if as_json:
        emit_json(plan)
    else:
        _show_plan(plan)


@clean_group.command("apply")
@_filters
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@json_option
@pass_app
def clean_apply(app: App, tag, quant, unused_days, category, missing, yes, as_json) -> None:
    """Delete the models the filters choose: their files and records (shared and loaded ones are kept).

    Shows the list first and asks for confirmation on a terminal; without a terminal, --yes is required.
    """
    from corral.clean import apply_clean

    plan = _plan(app, tag, quant, unused_days, category, missing)
    if not as_json:
        _show_plan(plan)
    if not any(not c.blocked for c in plan.candidates):
        if as_json:
            emit_json({"plan": plan, "report": None})
        return
    confirm_or_refuse("Delete these files and records?", yes)
    report = apply_clean(app.library, plan)
    if as_json:
        emit_json({"plan": plan, "report": report})
        return
    for line in report.skipped:
        click.echo(f"Kept {line}", err=True)
    for line in report.errors:
        click.echo(f"Could not delete {line}", err=True)
    click.echo(f"Removed {len(report.removed)} model(s); deleted {len(report.deleted)} file(s), "
               f"{human_size(report.freed) if report.freed else '0 B'} freed.")


@clean_group.command("hf-cache")
@click.option("--scan", "scan_only", is_flag=True, help="List cached repositories and revisions (the default).")
@click.option("--delete", "delete", multiple=True, metavar="REV|REPO",
              help="Delete a revision (hash or 7+ character prefix), or every revision of a repository.")
@click.option("--dir", "cache_dir", type=click.Path(path_type=Path), help="The cache folder (default: HF_HUB_CACHE).")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@json_option
@pass_app
def clean_hf_cache(app: App, scan_only, delete, cache_dir, yes, as_json) -> None:
    """The Hugging Face cache through huggingface_hub: repositories, revisions, sizes; delete revisions.

    Deletion uses huggingface_hub's own strategy (a blob another revision still links to stays); library
    records whose files were in the deleted revisions are forgotten with them.
    """
    from corral.adopt.hf_cache import cached_revisions, execute_deletion, plan_deletion, scan_cache

    if scan_only and delete:
        raise click.UsageError("--scan lists, --delete deletes; give one of them")
    info = scan_cache(cache_dir)
    if not delete:
        revisions = cached_revisions(app.library, info)
        if as_json:
            emit_json({"cache_dir": _cache_dir(info, cache_dir), "size": info.size_on_disk, "revisions": revisions,
                       "warnings": [str(w) for w in info.warnings]})
            return
        rows = [(r.repo, r.repo_type, r.revision[:12], ",".join(r.refs), r.files, human_size(r.size),
                 ", ".join(r.used_by)) for r in revisions]  # fmt: skip
        table(rows, ["REPO", "TYPE", "REVISION", "REFS", "FILES", "SIZE", "IN LIBRARY"])
        for warning in info.warnings:
            click.echo(f"warning: {warning}", err=True)
        click.echo(f"{len(revisions)} revision(s), {human_size(info.size_on_disk) or '0 B'} on disk.")
        return
    plan, strategy = plan_deletion(app.library, info, list(delete))
    if not as_json:
        for r in plan.revisions:
            click.echo(f"  delete {r.repo} {r.revision} ({human_size(r.size)})")
        if plan.records:
            click.echo(f"  library records forgotten with them: {', '.join(plan.records)}")
        click.echo(f"Frees {human_size(plan.frees) or '0 B'}.")
    confirm_or_refuse("Delete these revisions from the Hugging Face cache?", yes)
    done = execute_deletion(app.library, plan, strategy)
    if as_json:
        emit_json(done)
    else:
        click.echo(f"Deleted {len(done.revisions)} revision(s), {human_size(done.frees) or '0 B'} freed.")


def _cache_dir(info, given) -> str | None:
    where = getattr(info, "cache_dir", None) or given
    return str(where) if where else None


COMMANDS = (manifest_group, clean_group)
