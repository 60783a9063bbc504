"""The ``corral`` command line, built by :func:`build_cli` (nothing happens at import time)."""

from __future__ import annotations

import click

from corral import __version__


def build_cli() -> click.Group:
    """The top-level group: the core's commands, then whatever plugins add (``register_commands``)."""
    from corral.cli import hardware_cmds, library_cmds, maintenance_cmds, parts_cmds, plugin_cmds, run_cmds, server_cmds
    from corral.cli import hub_cmds, keys_cmds
    from corral.cli import plugin_new_cmd
    from corral.cli.base import CorralGroup
    from corral.plugins import get_host

    @click.group(cls=CorralGroup, context_settings={"help_option_names": ["-h", "--help"]})
    @click.version_option(__version__, prog_name="corral")
    def cli() -> None:
        """Corral keeps a library of local AI models: import, detect, download, load, serve them.

        Data lives in CORRAL_HOME (default: the user data directory).
        """

    for module in (library_cmds, parts_cmds, plugin_cmds, run_cmds, hub_cmds, server_cmds, hardware_cmds, maintenance_cmds, plugin_new_cmd, keys_cmds):
        for command in module.COMMANDS:
            cli.add_command(command)
    get_host().add_commands(cli)
    return cli


def main() -> None:
    build_cli()(prog_name="corral")
