"""Corral plugin for Hugging Face transformers.

Registers the ``transformers`` driver (causal LMs with precision, device map, quantization and weighted
PEFT adapters), the ``hf-causal-lm`` exporter (a fresh Llama-style model written as a Hugging Face
directory), the ``corral create`` and ``corral tokenizer train`` commands and their HTTP routes
(``/corral/create``, ``/corral/tokenizers``). Only Corral and the standard library are imported here:
torch, transformers, peft, tokenizers and sentencepiece load inside loads, commands and routes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from corral import hookimpl

if TYPE_CHECKING:
    import click

    from corral.api import Driver, Exporter


@hookimpl
def register_drivers(register: Callable[[type[Driver]], None]) -> None:
    """Register the transformers driver."""
    from corral_transformers.driver import TransformersDriver

    register(TransformersDriver)


@hookimpl
def register_exporters(register: Callable[[type[Exporter]], None]) -> None:
    """Register the exporter behind ``corral create``."""
    from corral_transformers.export import HfCausalLmExporter

    register(HfCausalLmExporter)


@hookimpl
def register_commands(cli: click.Group) -> None:
    """Add ``corral create`` and ``corral tokenizer train``."""
    from corral_transformers.commands import create_cmd, tokenizer_group

    cli.add_command(create_cmd)
    cli.add_command(tokenizer_group)


@hookimpl
def register_routes(register: Callable[..., None]) -> None:
    """``corral create`` and ``corral tokenizer train`` over HTTP (management scope)."""
    from corral_transformers.web import routes

    for route in routes():
        register(route, scope="management")
