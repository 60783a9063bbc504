"""Meets the whole contract."""

from kit_common import KitDriver

from corral import hookimpl


class GoodDriver(KitDriver):
    name = "kit-good"
    distribution = "corral-kit-good"


@hookimpl
def register_drivers(register):
    register(GoodDriver)
