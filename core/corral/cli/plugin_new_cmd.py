"""``corral plugin new NAME --out DIR``: render the plugin template into a new plugin package.

The template is plugin_template/ of Corral's source tree, embedded in
:mod:`corral.cli.template_files` so an installed Corral renders it as well. Placeholders:
``corral_NAME`` becomes the module name, ``NAME`` before a capital letter (``NAMEDriver``) the class
prefix, and any other ``NAME`` the plugin's short name (entry point, driver name, ``corral-NAME``).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

import attrs
import click

from corral.cli.base import emit_json, json_option
from corral.errors import Conflict, CorralError

_VALID = re.compile(r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$")
_PLACEHOLDER = re.compile(r"(corral_NAME)|(NAME)(?=[A-Z])|NAME")


@attrs.frozen
class PluginNames:
    """The names a plugin called ``short`` goes by."""

    short: str  # entry point and driver name: "my-backend"
    distribution: str  # what users pip install: "corral-my-backend"
    module: str  # the import name: "corral_my_backend"
    prefix: str  # class-name prefix: "MyBackend"

    @classmethod
    def parse(cls, name: str) -> PluginNames:
        """Names from what the user typed (``my-backend``, ``my_backend`` or ``corral-my-backend``)."""
        short = name.strip().lower().replace("_", "-")
        short = short[len("corral-"):] if short.startswith("corral-") else short
        if not _VALID.match(short):
            raise CorralError(
                f"{name!r} is not a plugin name: use lower-case letters, digits and dashes, "
                "starting with a letter (e.g. my-backend)"
            )
        return cls(
            short=short,
            distribution=f"corral-{short}",
            module="corral_" + short.replace("-", "_"),
            prefix="".join(part.capitalize() for part in short.split("-")),
        )

    def render(self, text: str) -> str:
        """``text`` with the template's placeholders replaced."""

        def replace(match: re.Match) -> str:
            return self.module if match.group(1) else self.prefix if match.group(2) else self.short

        return _PLACEHOLDER.sub(replace, text)


def render_plugin(name: str, out: Path, files: dict[str, str] | None = None) -> tuple[PluginNames, list[Path]]:
    """Write the rendered template into ``out`` (which must not exist or be empty); all or nothing."""
    if files is None:
        from corral.cli.template_files import FILES as files
    names = PluginNames.parse(name)
    out = Path(out).expanduser().absolute()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise Conflict(f"{out} already exists and is not an empty folder; choose a new --out")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    except OSError as exc:
        raise CorralError(f"{out}: cannot create the plugin there ({exc.strerror})") from None
    written = []
    try:
        for rel, text in files.items():
            path = staging / names.render(rel)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(names.render(text), encoding="utf-8")
            written.append(out / path.relative_to(staging))
        if out.exists():
            out.rmdir()
        os.replace(staging, out)
    except OSError as exc:
        raise CorralError(f"{out}: cannot write the plugin ({exc.strerror})") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return names, written


@click.group("plugin")
def plugin_group() -> None:
    """Write Corral plugins (see docs/plugins.md)."""


@plugin_group.command("new")
@click.argument("name")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for the new package (must not exist or be empty).")
@json_option
def new_cmd(name, out, as_json) -> None:
    """Create plugin package corral-NAME in --out from Corral's plugin template."""
    names, written = render_plugin(name, out)
    if as_json:
        emit_json({**attrs.asdict(names), "path": str(Path(out).absolute()), "files": [str(p) for p in written]})
        return
    click.echo(f"Created {names.distribution} in {out}:")
    for path in written:
        click.echo(f"  {path.relative_to(Path(out).absolute())}")
    click.echo(f"Next: pip install -e {out} && python -m pytest {out}/tests")


COMMANDS = (plugin_group,)
