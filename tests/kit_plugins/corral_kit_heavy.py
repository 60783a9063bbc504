"""Imports a backend library at module level (here a stand-in module named kokoro)."""

import kokoro  # noqa: F401
from kit_common import KitDriver

from corral import hookimpl


class HeavyDriver(KitDriver):
    name = "kit-heavy"
    distribution = "corral-kit-heavy"


@hookimpl
def register_drivers(register):
    register(HeavyDriver)
