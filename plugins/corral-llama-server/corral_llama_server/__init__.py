"""Corral plugin: GGUF models through llama.cpp's server engine in-process (xllamacpp), with slots and
continuous batching.

Registration declares the driver and the ``corral llama-server`` commands only; xllamacpp is imported
when a model loads or ``corral env`` runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from corral import hookimpl

from corral_llama_server.driver import LlamaServerDriver

if TYPE_CHECKING:
    import click

__all__ = ["LlamaServerDriver"]


@hookimpl
def register_drivers(register):
    """Register the llama-server driver."""
    register(LlamaServerDriver)


@hookimpl
def register_commands(cli: click.Group) -> None:
    """Add ``corral llama-server build``."""
    from corral_llama_server.command import llama_server_cmd

    cli.add_command(llama_server_cmd)
