"""Hub commands, answered by download-source plugins: search, files, pull.

Each names the plugin to install when no installed plugin serves the hub.
"""

from __future__ import annotations

from pathlib import Path

import click

from corral.cli.base import App, emit_json, human_count, human_size, json_option, pass_app, table
from corral.records import Category

#: What ``corral search --category`` accepts: the library's categories plus hub-only kinds.
SEARCH_CATEGORIES = (
    "chat",
    "multimodal",
    "text-generation",
    "embedding",
    "rerank",
    "image",
    "text-to-image",
    "video",
    "tts",
    "speech-to-text",
)

source_option = click.option(
    "--source", metavar="HUB", help="Hub to use: huggingface (the default), modelscope, or another hub plugin."
)


def _category(value: str | None) -> Category | str | None:
    if value is None:
        return None
    return Category(value) if value in {c.value for c in Category} else value


@click.command("search")
@click.argument("query")
@source_option
@click.option("--category", type=click.Choice(SEARCH_CATEGORIES), help="Only models of this kind.")
@click.option("--limit", type=int, default=20, show_default=True)
@json_option
@pass_app
def search_cmd(app: App, query, source, category, limit, as_json) -> None:
    """Search a hub for models matching QUERY, most downloaded first."""
    from corral.pull import DEFAULT_SOURCE, get_source

    hub = get_source(app.host, source or DEFAULT_SOURCE)
    hits = hub.search(query, category=_category(category), limit=limit)
    if as_json:
        emit_json(hits)
        return
    rows = [(h.repo, h.category or "-", human_count(h.downloads), human_count(h.likes), human_size(h.size)) for h in hits]
    table(rows, ["REPO", "CATEGORY", "DOWNLOADS", "LIKES", "SIZE"])


@click.command("files")
@click.argument("ref", metavar="REPO[:REV]")
@source_option
@click.option("--offline", is_flag=True, help="Answer from the local download cache only.")
@json_option
@pass_app
def files_cmd(app: App, ref, source, offline, as_json) -> None:
    """List a hub repository's files with their sizes; GGUF files grouped by quantization."""
    from corral.pull import get_source, gguf_variants, parse_ref, quant_of
    from corral.pull.names import unsafe_reason
    from corral.pull.variants import is_gguf, is_mmproj

    wanted = parse_ref(ref, app.host.sources, source)
    snap = get_source(app.host, wanted.source).snapshot(wanted.repo, wanted.revision, offline=offline)
    variants = gguf_variants(snap.files)

    def note(name: str) -> str:
        reason = unsafe_reason(name)
        if reason:
            return f"UNSAFE NAME ({reason}): never downloaded"
        if is_mmproj(name):
            return "mmproj"
        return quant_of(name) or "" if is_gguf(name) else ""

    if as_json:
        from corral.pull.variants import listing

        emit_json(listing(snap))
        return
    at = f" @ {snap.revision}" + (f" ({snap.commit[:12]})" if snap.commit else "") if snap.revision else ""
    click.echo(f"{snap.repo} on {snap.source}{at}")
    if variants:
        click.echo("\nGGUF variants (corral pull REPO --quant QUANT):")
        rows = []
        for v in variants:
            files = v.files[0] + (f" (+{len(v.files) - 1} more parts)" if v.split and len(v.files) > 1 else "")
            if not v.split and len(v.files) > 1:
                files = ", ".join(v.files)
            rows.append(("mmproj " + v.quant if v.mmproj else v.quant, human_size(v.size), files))
        table(rows, ["QUANT", "SIZE", "FILES"])
        click.echo()
    table([(f.name, human_size(f.size), note(f.name)) for f in snap.files], ["FILE", "SIZE", "NOTE"])


@click.command("pull")
@click.argument("ref", metavar="REPO[:REV]|URL")
@click.option("--file", "names", multiple=True, metavar="NAME", help="Only this file (repeat for more).")
@click.option("--quant", help="Only the GGUF files of this quantization (e.g. Q4_K_M).")
@click.option("--all", "everything", is_flag=True, help="Every file, also from a repo with several quantizations.")
@click.option("--no-mmproj", is_flag=True, help="Do not bring a multimodal projector along with a GGUF model.")
@source_option
@click.option("--dest", type=click.Path(file_okay=False, path_type=Path), help="Download here, not to the hub's cache.")
@click.option("--name", help="Library name for the pulled model.")
@click.option("--base", metavar="MODEL", help="Bind a pulled LoRA adapter to this library model.")
@click.option("--offline", is_flag=True, help="Use only files already downloaded; never touch the network.")
@click.option("--local", is_flag=True, help="Pull in this process even when a server runs for this library.")
@json_option
@pass_app
@click.pass_context
def pull_cmd(ctx, app: App, ref, names, quant, everything, no_mmproj, source, dest, name, base, offline, local,
             as_json) -> None:
    """Download a model from a hub and add it to the library.

    REPO is org/name, org/name:branch or a hub link. Ctrl-C pauses; the same command resumes from the
    partial data, also after a restart. Each file is verified before it is moved into place. When a
    server runs for this library (corral serve), the pull is one of its jobs: Ctrl-C pauses the job and
    the same command resumes it; --local pulls in this process instead.
    """
    from corral.pull import describe

    server = None
    if not local:
        from corral.cli.server_pull import running_server

        server = running_server()
    result = pull_model(ctx, app, ref, source=source, names=names, quant=quant, everything=everything,
                        mmproj=not no_mmproj, dest=dest, offline=offline, name=name, base=base, server=server)
    if as_json:
        emit_json(result)
        return
    click.echo(describe(result))
    for model in result.models:
        extra = "".join(f", {c.kind} {c.path.name}" for c in model.components)
        click.echo(f"Added {model.name} ({model.category}, {model.format}{extra}): {model.path}")
    for model in result.existing:
        click.echo(f"Already in the library: {model.name} ({model.path})")
    for lora in result.loras:
        click.echo(f"Bound LoRA {lora.name} to {base}: {lora.path}")
    for offer in result.offers:
        click.echo(offer)


def pull_model(ctx: click.Context, app: App, ref: str, *, source: str | None = None, names=(),
               mmproj: bool = True, server=None, **options):
    """Pull ``ref`` (``REPO[:REV]`` or a hub link) with progress on stderr, as ``corral pull`` does; Ctrl-C
    pauses (the message says how to resume) and ends the command. ``options`` go to
    :func:`corral.pull.pull` (``quant``, ``everything``, ``dest``, ``offline``, ``name``, ``base``).
    ``server`` (a :class:`corral.server.client.Client`): pull as a job of that server and follow it."""
    from corral.errors import Paused

    try:
        if server is not None:
            from corral.cli.server_pull import pull_through

            return pull_through(server, ref, progress_meter(), source=source, names=names, mmproj=mmproj,
                                **options)
        from corral.pull import get_source, parse_ref, pull

        wanted = parse_ref(ref, app.host.sources, source)
        hub = get_source(app.host, wanted.source)
        return pull(app.library, hub, wanted.repo, revision=wanted.revision, names=tuple(names) + wanted.files,
                    mmproj=mmproj, meter=progress_meter(), **options)
    except Paused as exc:
        click.echo(str(exc)[:1].upper() + str(exc)[1:] + ".", err=True)
        ctx.exit(exc.exit_code)


def progress_meter():
    """Progress on stderr: rich when installed (percent, speed, time left, files), else plain lines."""
    import importlib.util

    return RichMeter() if importlib.util.find_spec("rich") is not None else PlainMeter()


class PlainMeter:
    """One line per finished file, for when rich is not installed (a :class:`corral.pull.Meter`)."""

    def __init__(self) -> None:
        self.count, self.files = 0, 0

    def begin(self, files, total, have):
        self.files = files

    def start_file(self, name, size, have):
        if have:
            click.echo(f"Resuming {name} at {human_size(have)} of {human_size(size)}", err=True)

    def advance(self, nbytes):
        pass

    def rewind(self, nbytes):
        pass

    def end_file(self, name, fetched, reused):
        self.count += 1
        how = "already here" if reused else f"{human_size(fetched)} fetched"
        click.echo(f"[{self.count}/{self.files}] {name}: {how}", err=True)

    def note(self, text):
        click.echo(text, err=True)

    def end(self):
        pass


class RichMeter(PlainMeter):
    """A rich progress bar: file name, bar, percent, bytes, speed, time left, files done / total."""

    def __init__(self) -> None:
        super().__init__()
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[done]}"),
            console=Console(stderr=True),
        )
        self.task = None

    def _files(self) -> str:
        return f"{self.count}/{self.files} files"

    def begin(self, files, total, have):
        self.files = files
        self.bar.start()
        self.task = self.bar.add_task("pull", total=total, completed=have, done=self._files())

    def start_file(self, name, size, have):
        from rich.markup import escape

        shown = name if len(name) <= 40 else "…" + name[-39:]
        self.bar.update(self.task, description=escape(shown))  # hub file names are not markup
        if have:
            self.note(f"Resuming {name} at {human_size(have)} of {human_size(size)}")

    def advance(self, nbytes):
        self.bar.advance(self.task, nbytes)

    def rewind(self, nbytes):
        self.bar.advance(self.task, -nbytes)

    def end_file(self, name, fetched, reused):
        self.count += 1
        self.bar.update(self.task, done=self._files())

    def note(self, text):
        self.bar.console.print(text, markup=False, highlight=False)

    def end(self):
        self.bar.stop()


COMMANDS = (search_cmd, files_cmd, pull_cmd)
