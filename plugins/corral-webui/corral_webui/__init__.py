"""Corral's web UI: the model library in the browser, served by ``corral serve``.

Registers the page at ``/``, its scripts and styles under ``/ui/`` (answered without a key, as a static
page; the Host and Origin rules still apply), the JSON routes the page reads under ``/corral/ui/api/``
(keys and scopes apply), and the ``corral ui`` command. Only Corral and click are imported here: the
route module (Starlette) loads when the server builds its app.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from corral import hookimpl

if TYPE_CHECKING:
    import click


@hookimpl
def register_routes(register: Callable[..., None]) -> None:
    """The page, its static files and its JSON routes."""
    from corral_webui.routes import routes

    for route, scope in routes():
        register(route, scope=scope)


@hookimpl
def register_commands(cli: click.Group) -> None:
    """Add ``corral ui``."""
    from corral_webui.command import ui_cmd

    cli.add_command(ui_cmd)
