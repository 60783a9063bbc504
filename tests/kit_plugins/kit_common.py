"""A well-behaved GGUF chat driver that the broken kit plugins each spoil in one way."""

from corral.driver import Driver, LoadedModel
from corral.errors import DetectionError, NotFound
from corral.records import Category, ChatResult, Format


class KitHandle(LoadedModel):
    def complete(self, prompt, *, stream=False, **params):
        words = ["heard:", *prompt.split()]
        return iter(words) if stream else ChatResult(text=" ".join(words))

    def chat(self, messages, *, stream=False, **params):
        return self.complete(messages[-1]["content"], stream=stream)

    def memory(self):
        return {"ram": 1, "vram": 0}


class KitDriver(Driver):
    categories = frozenset({Category.CHAT})
    formats = frozenset({Format.GGUF})

    def load(self, model, settings, loras=()):
        if not model.path.is_file():
            raise NotFound(f"{model.path}: file not found")
        if model.path.read_bytes()[:4] != b"GGUF":
            raise DetectionError(f"{model.path}: not a GGUF file")
        return KitHandle(model, settings, loras)
