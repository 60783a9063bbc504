"""Corral past one machine: models placed across a Ray cluster.

Registers the ``ray`` executor (``corral serve --cluster ray``, the same as ``--executor ray``) and the
``corral worker`` command that joins a machine to the cluster. Only Corral is imported here: Ray loads
when the executor is built or the command runs, so ``corral --help`` stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from corral import hookimpl
from corral.api import ExecutorSpec

if TYPE_CHECKING:
    import click


@hookimpl
def register_executors(register: Callable[[ExecutorSpec], None]) -> None:
    """``ray``: each loaded model in a Ray actor on a node chosen by files, drivers, slots and memory."""
    register(ExecutorSpec("ray", "corral_ray.executor:RayExecutor",
                          "each loaded model in an actor on a Ray cluster node (corral worker joins nodes)"))


@hookimpl
def register_commands(cli: click.Group) -> None:
    """Add ``corral worker``."""
    from corral_ray.command import worker_cmd

    cli.add_command(worker_cmd)
