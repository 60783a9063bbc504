"""Small plugins used by the core's tests (they stand in for third-party plugins, not for backends)."""

from __future__ import annotations

from corral import hookimpl
from corral.driver import Driver, LoadedModel, Source
from corral.records import Category, Format, SettingSpec


class EchoHandle(LoadedModel):
    def chat(self, messages, *, stream=False, **params):
        text = "echo: " + messages[-1]["content"]
        return iter(text.split(" ")) if stream else text

    def memory(self):
        return {"ram": 1}


class EchoDriver(Driver):
    name = "echo"
    distribution = "corral-echo"
    categories = frozenset({Category.CHAT})
    formats = frozenset({Format.GGUF})
    settings = (SettingSpec("echo_volume", int, "how loud", 1, minimum=0, maximum=11),)

    def load(self, model, settings, loras=()):
        return EchoHandle(model, settings, loras)


class MissingBackendDriver(Driver):
    name = "needs-missing"
    distribution = "corral-missing"
    categories = frozenset({Category.EMBEDDING})
    formats = frozenset({Format.HF_DIR})
    requires = ("corral_no_such_backend_module",)


class echo_plugin:  # noqa: N801 - a namespace registered as a plugin
    @staticmethod
    @hookimpl
    def register_drivers(register):
        register(EchoDriver)


class missing_plugin:  # noqa: N801
    @staticmethod
    @hookimpl
    def register_drivers(register):
        register(MissingBackendDriver)


class bad_register_plugin:  # noqa: N801
    @staticmethod
    @hookimpl
    def register_drivers(register):
        register(EchoDriver)
        raise RuntimeError("boom while registering")


class LocalSource(Source):
    name = "localhub"
    distribution = "corral-localhub"


class source_plugin:  # noqa: N801
    @staticmethod
    @hookimpl
    def register_sources(register):
        register(LocalSource)


class crashing_detector:  # noqa: N801
    @staticmethod
    @hookimpl
    def detect_model(path):
        raise ZeroDivisionError("bug in a third-party detector")
