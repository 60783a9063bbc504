"""Corral plugin NAME: a driver for GGUF chat models, as a starting point for your own.

Registering the driver costs nothing: the class declares what it handles in class attributes. The
example backend only checks the file and greets the prompt back; put your library's calls in ``load``
and in the handle's methods, and import the library there, never at module level.
"""

from __future__ import annotations

from corral import hookimpl
from corral.api import Driver, LoadedModel
from corral.api import CorralError, DetectionError, NotFound
from corral.api import Category, ChatResult, Format, SettingSpec


class NAMEHandle(LoadedModel):
    """A loaded model. Implement the tasks of your categories; the others raise ``Unsupported``."""

    def __init__(self, model, settings, loras, header: bytes) -> None:
        super().__init__(model, settings, loras)
        self.header = header  # a real backend keeps its model object here

    def complete(self, prompt, *, stream=False, max_tokens=None, **params):
        """Greet the prompt back, at most ``max_tokens`` words."""
        words = f"{self.settings.get('greeting') or 'Hello'}, {prompt}".split()
        words = words[:max_tokens] if max_tokens else words
        if stream:
            return (word if i == 0 else " " + word for i, word in enumerate(words))
        return ChatResult(text=" ".join(words), completion_tokens=len(words))

    def chat(self, messages, *, stream=False, **params):
        """Answer the last message (a real backend applies the chat template to all of them)."""
        return self.complete(messages[-1]["content"], stream=stream, **params)

    def memory(self):
        return {"ram": len(self.header), "vram": 0}

    def unload(self):
        self.header = b""


class NAMEDriver(Driver):
    """Loads GGUF chat models."""

    name = "NAME"
    distribution = "corral-NAME"
    categories = frozenset({Category.CHAT})
    formats = frozenset({Format.GGUF})
    requires = ()  # import names of your backend: found with find_spec, never imported at start-up
    settings = (SettingSpec("greeting", str, "the word each answer starts with", "Hello"),)

    def load(self, model, settings, loras=()):
        """Open ``model``; a missing or foreign file raises a Corral error that names it."""
        try:
            with open(model.path, "rb") as f:
                header = f.read(4096)
        except FileNotFoundError:
            raise NotFound(f"{model.path}: file not found; re-import {model.name} or remove it") from None
        except OSError as exc:
            raise CorralError(f"{model.path}: cannot read it ({exc.strerror})") from None
        if not header.startswith(b"GGUF"):
            raise DetectionError(f"{model.path}: not a GGUF file; re-download {model.name}")
        return NAMEHandle(model, settings, loras, header)


@hookimpl
def register_drivers(register):
    """Register this plugin's driver."""
    register(NAMEDriver)
