"""A test driver for the runner executor's tests: it does what the last message says (stream slowly, sleep
forever, abort, raise), so a test can make a runner crash or hang on cue. It stands in for a backend's
failures, not for a backend: the executor and the runtime are what these tests exercise.

It lives in its own small module because runner processes import it by name.
"""

from __future__ import annotations

import os
import time

from corral import hookimpl
from corral.api import Category, ChatResult, Driver, Format, InvalidRequest, LoadedModel


class ScriptHandle(LoadedModel):
    """``chat`` by the last message: ``slow N`` (stream N pieces 0.1 s apart), ``sleep`` (forever),
    ``sleep mid`` (one piece, then forever), ``abort``, ``bad`` (a Corral error), ``bug`` (any other
    error); anything else is answered with the process id."""

    def chat(self, messages, *, stream=False, **params):
        text = str(messages[-1]["content"])
        if text == "sleep":
            time.sleep(3600)
        if text == "abort":
            os.abort()
        if text == "bad":
            raise InvalidRequest("bad is not a thing this model does")
        if text == "bug":
            raise ZeroDivisionError("a bug in the driver")
        if stream:
            return self._pieces(text)
        return ChatResult(text=f"pid {os.getpid()}", prompt_tokens=1, completion_tokens=2)

    def _pieces(self, text):
        if text == "sleep mid":
            yield "first "
            time.sleep(3600)
        count = int(text.split()[1]) if text.startswith("slow ") else 0
        for i in range(count):
            time.sleep(0.1)
            yield f"{i} "
        if not count:
            for word in text.split():
                yield word + " "
        return ChatResult(text="", finish_reason="length", prompt_tokens=1, completion_tokens=max(count, 1))

    def embed(self, texts, **params):
        import numpy as np

        return np.array([[float(len(t)), 0.5] for t in texts], dtype=np.float32)

    def imagine(self, prompt, **params):
        from PIL import Image

        return [Image.new("RGB", (4, 3), (255, 0, 0)), Image.new("L", (2, 2), 7)]

    def speak(self, text, **params):
        import numpy as np

        return np.linspace(-1, 1, 8, dtype=np.float32), 24000

    def whoami(self):
        """A public method beyond the tasks: the server may call it too."""
        return {"pid": os.getpid(), "settings": self.settings, "loras": len(self.loras)}

    def memory(self):
        return {"ram": 1, "vram": 0}


class ScriptDriver(Driver):
    name = "script"
    distribution = "corral-script"
    categories = frozenset({Category.CHAT})
    formats = frozenset({Format.GGUF})

    def load(self, model, settings, loras=()):
        if model.name == "unloadable":
            raise InvalidRequest(f"{model.name}: this test model refuses to load")
        return ScriptHandle(model, settings, loras)


class script_plugin:  # noqa: N801 - a namespace registered as a plugin
    @staticmethod
    @hookimpl
    def register_drivers(register):
        register(ScriptDriver)
