"""Small plugins used by the core's tests (they stand in for third-party plugins, not for backends)."""

from __future__ import annotations

from corral import hookimpl
from corral.driver import Driver, Exporter, GpuVendor, LoadedModel, Source
from corral.records import Category, Format, GpuInfo, SettingSpec


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


class NullExporter(Exporter):
    name = "null-export"
    distribution = "corral-null"


class FakeVendor(GpuVendor):
    name = "fakegpu"
    distribution = "corral-fakegpu"

    def probe(self):
        return [GpuInfo(vendor="fake", index=0, name="Fake GPU", vram_total=1 << 30)]


class extras_plugin:  # noqa: N801
    @staticmethod
    @hookimpl
    def register_exporters(register):
        register(NullExporter)

    @staticmethod
    @hookimpl
    def register_gpu_vendors(register):
        register(FakeVendor)

    @staticmethod
    @hookimpl
    def register_commands(cli):
        import click

        @cli.command("hello")
        def hello():
            """Say hello from a plugin."""
            click.echo("hello from a plugin")


class LoudEchoDriver(EchoDriver):
    name = "loud-echo"
    priority = 10


class choosy_plugin:  # noqa: N801
    """Registers a higher-priority echo driver, then picks the plain one through select_driver."""

    @staticmethod
    @hookimpl
    def register_drivers(register):
        register(LoudEchoDriver)

    @staticmethod
    @hookimpl
    def select_driver(model, drivers):
        return next(d for d in drivers if d.name == "echo")


class recorder_plugin:  # noqa: N801
    events: list = []

    @staticmethod
    @hookimpl
    def model_loaded(model, loras, memory):
        recorder_plugin.events.append(("loaded", model.name, memory))

    @staticmethod
    @hookimpl
    def model_unloaded(model):
        recorder_plugin.events.append(("unloaded", model.name))


class refusing_lora_plugin:  # noqa: N801
    @staticmethod
    @hookimpl
    def check_lora(base, lora):
        from corral.errors import Incompatible

        raise Incompatible(f"{lora.path.name} refused by a plugin for {base.name}")
