"""``corral plugins``: what is installed, what each plugin provides, what failed to load."""

from __future__ import annotations

import click

from corral.cli.base import App, emit_json, json_option, pass_app


@click.command("plugins")
@json_option
@pass_app
def plugins_cmd(app: App, as_json) -> None:
    """List plugins: what each provides, and those that failed to load."""
    import contextlib
    import io

    from corral.catalog import plugin_entries

    with contextlib.redirect_stderr(io.StringIO()):  # the listing below reports what went wrong
        plugin_entries(app.host)
    infos = app.host.plugin_infos()
    if as_json:
        emit_json(infos)
        return
    for info in infos:
        origin = "built-in" if info.builtin else f"{info.distribution or '?'} {info.version or ''}".strip()
        if info.error:
            click.echo(f"{info.name} ({origin}): FAILED — {info.error}")
            continue
        click.echo(f"{info.name} ({origin})")
        for label, values in (
            ("drivers", info.drivers),
            ("sources", info.sources),
            ("exporters", info.exporters),
            ("gpu vendors", info.gpu_vendors),
            ("categories", info.categories),
            ("formats", info.formats),
            ("store layouts", info.store_layouts),
            ("hooks", info.hooks),
        ):
            if values:
                click.echo(f"  {label}: {', '.join(values)}")
        for problem in info.problems:
            click.echo(f"  problem: {problem}")


COMMANDS = (plugins_cmd,)
