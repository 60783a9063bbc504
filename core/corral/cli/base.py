"""What every command shares: the error boundary, the lazily opened library, ``--json`` output."""

from __future__ import annotations

import json
import sys
from typing import Any, Callable, Iterable, Sequence

import click

from corral.errors import CorralError


class CorralGroup(click.Group):
    """A click group that turns Corral errors into one line on stderr and a non-zero exit code.

    A command run with ``--json`` that fails also prints one JSON error document on stdout:
    ``{"error": {"message": ..., "code": ..., "exit_code": ...}}`` (``code`` as in the HTTP API's error
    bodies: ``not_found``, ``conflict``, ...; ``usage_error`` for a wrong option or argument).
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta["corral.json"] = _asks_json(args)
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        wants_json = ctx.meta.get("corral.json", False)
        try:
            return super().invoke(ctx)
        except CorralError as exc:
            if wants_json:
                emit_error(str(exc), _error_code(type(exc)), exc.exit_code)
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except click.ClickException as exc:
            if wants_json:
                emit_error(exc.format_message(), "usage_error", exc.exit_code)
            raise
        except KeyboardInterrupt:
            if wants_json:
                emit_error("interrupted", "interrupted", 130)
            click.echo("Interrupted.", err=True)
            ctx.exit(130)


def _asks_json(args: Sequence[str]) -> bool:
    """Whether the command line asks for ``--json`` (options end at ``--``)."""
    for arg in args:
        if arg == "--":
            return False
        if arg == "--json":
            return True
    return False


def _error_code(cls: type) -> str:
    from corral.server.client import error_code

    return error_code(cls)


def emit_error(message: str, code: str, exit_code: int) -> None:
    """The JSON error document a failing ``--json`` command prints on stdout."""
    click.echo(json.dumps({"error": {"message": message, "code": code, "exit_code": exit_code}},
                          ensure_ascii=False, indent=2))


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


class ModelName(click.ParamType):
    """A library model's name or id (``MODEL`` arguments). Any string is accepted here (the library
    says what it does not know, with suggestions); the shell completes the library's names, read straight
    from the database without opening the library or loading plugins."""

    name = "model"

    def __init__(self, table: str = "models") -> None:
        self.table = table

    def names(self) -> list[str]:
        import sqlite3

        from corral.home import library_db

        path = library_db()
        if not path.is_file():
            return []
        try:
            db = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=1)
            try:
                return [r[0] for r in db.execute(f"SELECT name FROM {self.table} ORDER BY name COLLATE NOCASE")]
            finally:
                db.close()
        except sqlite3.Error:
            return []

    def shell_complete(self, ctx: Any, param: Any, incomplete: str) -> list:
        from click.shell_completion import CompletionItem

        return [CompletionItem(n) for n in self.names() if n.lower().startswith(incomplete.lower())]


#: ``MODEL`` arguments: completes the library's model names.
MODEL_NAME = ModelName()
#: LoRA arguments: completes the library's LoRA names.
LORA_NAME = ModelName("loras")


class App:
    """Per-invocation state; the library (database + plugins) is opened on first use."""

    def __init__(self) -> None:
        self._library = None
        self._store = None

    @property
    def library(self):  # -> corral.library.Library
        if self._library is None:
            from corral.library import Library, open_library

            self._library = open_library() if self._store is None else Library(self._store)
        return self._library

    @property
    def store(self):  # -> corral.store.Store
        """The library database alone, for commands that only read records (``ls``): no record
        operations and no plugin host are imported."""
        if self._library is not None:
            return self._library.store
        if self._store is None:
            import os

            from corral.home import corral_home
            from corral.store import Store

            home = corral_home()
            os.makedirs(home, exist_ok=True)
            self._store = Store(home / "library.db")
        return self._store

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
