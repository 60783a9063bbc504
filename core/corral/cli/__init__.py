"""The ``corral`` command line, built by :func:`build_cli` (nothing happens at import time).

Commands load lazily: running one imports only the module that defines it (``corral ls`` never
imports the serving or hardware commands, nor the plugins' commands); ``--help`` and an unknown name
load every module and the plugins' commands (``register_commands``).
"""

from __future__ import annotations

import importlib
from typing import Any

import click

from corral import __version__
from corral.cli.base import CorralGroup
from corral.cli.examples import add_examples

#: The modules of ``corral.cli`` that define the core's commands, each in its ``COMMANDS`` tuple.
MODULES = (
    "library_cmds", "parts_cmds", "plugin_cmds", "run_cmds", "hub_cmds", "server_cmds", "hardware_cmds",
    "maintenance_cmds", "plugin_new_cmd", "keys_cmds",
)

#: Core command name -> its module (tests/test_startup.py checks this against every module's
#: COMMANDS). A name missing here still works: it loads every module, only slower.
COMMAND_MODULES = {
    **dict.fromkeys(("import", "scan", "ls", "show", "edit", "rm", "cp"), "library_cmds"),
    **dict.fromkeys(("lora", "component", "settings"), "parts_cmds"),
    "plugins": "plugin_cmds",
    **dict.fromkeys(("chat", "run", "embed", "rerank", "imagine", "speak"), "run_cmds"),
    **dict.fromkeys(("search", "files", "pull"), "hub_cmds"),
    **dict.fromkeys(("serve", "stop", "load", "unload", "ps"), "server_cmds"),
    **dict.fromkeys(("env", "monitor", "fit", "recommend", "catalog"), "hardware_cmds"),
    **dict.fromkeys(("manifest", "clean"), "maintenance_cmds"),
    "plugin": "plugin_new_cmd",
    "keys": "keys_cmds",
}


class LazyGroup(CorralGroup):
    """The top-level group: a command's module is imported when the command is asked for."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._loaded: set[str] = set()
        self._complete = False
        self.host: Any = None  # whose plugins add commands (None: the process-wide host)

    def _load(self, module: str) -> None:
        if module not in self._loaded:
            self._loaded.add(module)
            for command in importlib.import_module(f"corral.cli.{module}").COMMANDS:
                add_examples(command)
                self.add_command(command)

    def load_all(self) -> None:
        """Every core command, then whatever plugins add (``register_commands``)."""
        if not self._complete:
            self._complete = True
            for module in MODULES:
                self._load(module)
            from corral.plugins import get_host

            (self.host or get_host()).add_commands(self)
            for command in self.commands.values():
                add_examples(command)

    def get_command(self, ctx: click.Context | None, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMAND_MODULES:
            self._load(COMMAND_MODULES[cmd_name])
        if cmd_name not in self.commands:
            self.load_all()
        return self.commands.get(cmd_name)

    def list_commands(self, ctx: click.Context | None) -> list[str]:
        self.load_all()
        return super().list_commands(ctx)


def build_cli(host: Any = None) -> click.Group:
    """The top-level group: the core's commands, then whatever the plugins of ``host`` (default: the
    process-wide plugin host) add through ``register_commands``."""

    @click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
    @click.version_option(__version__, prog_name="corral")
    def cli() -> None:
        """Corral keeps a library of local AI models: import, detect, download, load, serve them.

        Data lives in CORRAL_HOME (default: the user data directory). Every command's --help ends with
        examples.

        \b
        Shell completion (commands, options and the library's model names), e.g. in ~/.bashrc:
          eval "$(_CORRAL_COMPLETE=bash_source corral)"
        zsh: _CORRAL_COMPLETE=zsh_source; fish: _CORRAL_COMPLETE=fish_source corral | source
        """

    cli.host = host
    return cli


def main() -> None:
    build_cli()(prog_name="corral")
