"""Lets its backend's own exceptions escape from load."""

from kit_common import KitHandle

from corral import hookimpl
from corral.driver import Driver
from corral.records import Category, Format


class LeakyDriver(Driver):
    name = "kit-leaky"
    distribution = "corral-kit-leaky"
    categories = frozenset({Category.CHAT})
    formats = frozenset({Format.GGUF})

    def load(self, model, settings, loras=()):
        if model.path.read_bytes()[:4] != b"GGUF":  # FileNotFoundError for a missing file
            raise ValueError("bad magic")
        return KitHandle(model, settings, loras)


@hookimpl
def register_drivers(register):
    register(LeakyDriver)
