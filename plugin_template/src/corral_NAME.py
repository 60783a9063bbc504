"""A Corral driver plugin. Registration declares capabilities; the backend is imported only in load()."""

from corral import hookimpl
from corral.driver import Driver, LoadedModel
from corral.records import Category, Format


class Handle(LoadedModel):
    def chat(self, messages, *, stream=False, **params):
        text = f"{self.model.name} heard: {messages[-1]['content']}"
        return iter([text]) if stream else text


class NameDriver(Driver):
    name = "NAME"
    distribution = "corral-NAME"
    categories = frozenset({Category.CHAT})
    formats = frozenset({Format.GGUF})
    requires = ()  # import names of the backend library, checked without importing it

    def load(self, model, settings, loras=()):
        return Handle(model, settings, loras)


@hookimpl
def register_drivers(register):
    register(NameDriver)
