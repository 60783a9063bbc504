"""Registers a driver that declares a name and nothing else."""

from corral import hookimpl
from corral.driver import Driver


class VagueDriver(Driver):
    name = "kit-nocaps"


@hookimpl
def register_drivers(register):
    register(VagueDriver)
