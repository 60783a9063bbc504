"""What every command shares: the error boundary, the lazily opened library, ``--json`` output."""

from __future__ import annotations

import json
import sys
from typing import Any, Callable, Iterable, Sequence

import click

from corral.errors import CorralError


class CorralGroup(click.Group):
    """A click group that turns Corral errors into one line on stderr and a non-zero exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CorralError as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            ctx.exit(130)


class CategoryType(click.ParamType):
    """A category an installed plugin registered (the built-in ones and any a plugin adds), checked when
    the option is used, so building the CLI never loads plugins for it."""

    name = "category"

    def _names(self) -> list[str]:
        from corral.plugins import get_host

        return get_host().category_names()

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        from corral.records import Category

        names = self._names()
        if value in names:
            return Category(value)
        self.fail(f"{value!r} is not a category of the installed plugins ({', '.join(names)})", param, ctx)

    def shell_complete(self, ctx: Any, param: Any, incomplete: str) -> list:
        from click.shell_completion import CompletionItem

        return [CompletionItem(n) for n in self._names() if n.startswith(incomplete)]


#: ``--category``: any registered category.
CATEGORY = CategoryType()


class App:
    """Per-invocation state; the library (database + plugins) is opened on first use."""

    def __init__(self) -> None:
        self._library = None

    @property
    def library(self):  # -> corral.library.Library
        if self._library is None:
            from corral.library import open_library

            self._library = open_library()
        return self._library

    @property
    def host(self):  # -> corral.plugins.PluginHost
        from corral.plugins import get_host

        return get_host()


pass_app = click.make_pass_decorator(App, ensure=True)


def json_option(func: Callable) -> Callable:
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")(func)


def emit_json(obj: Any) -> None:
    from corral.convert import to_data

    click.echo(json.dumps(to_data(obj), ensure_ascii=False, indent=2))


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> None:
    """Print aligned columns (plain text, so output can be piped)."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for row in cells:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())


def human_size(n: int | None) -> str:
    if not n:
        return "-"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return str(n)


def human_count(n: int | None) -> str:
    if not n:
        return "-"
    for unit, div in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= div:
            return f"{n / div:.1f}{unit}"
    return str(n)


def read_lines(texts: Iterable[str]) -> list[str]:
    """Texts from arguments, or one per line from stdin when the only argument is ``-``."""
    texts = list(texts)
    if texts == ["-"]:
        return [line.rstrip("\n") for line in sys.stdin if line.strip()]
    return texts
