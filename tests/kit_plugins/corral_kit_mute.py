"""Answers chat with a bare string instead of a ChatResult."""

from kit_common import KitDriver, KitHandle

from corral import hookimpl


class MuteHandle(KitHandle):
    def chat(self, messages, *, stream=False, **params):
        return iter(["..."]) if stream else "..."


class MuteDriver(KitDriver):
    name = "kit-mute"
    distribution = "corral-kit-mute"

    def load(self, model, settings, loras=()):
        super().load(model, settings, loras)
        return MuteHandle(model, settings, loras)


@hookimpl
def register_drivers(register):
    register(MuteDriver)
