"""Drivers (load a model with one backend library) and the loaded models they return.

Capabilities are class attributes, so registering a driver costs nothing: the backend library is imported
only inside :meth:`Driver.load` and the :class:`LoadedModel` methods.
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar, Iterator, Mapping, Sequence

import attrs

from corral.errors import Unsupported
from corral.ext.backend import backend_status
from corral.ext.torch import torch_acceleration
from corral.records import BackendStatus, Category, Format, LoraRequest, Model, SettingSpec

#: Progress callback for long work: ``progress(done, total, label)`` with byte or step counts.
Progress = Callable[[int, int | None, str], None]


def drain(stream: Iterator[str]) -> tuple[list[str], Any]:
    """Read a streamed answer to its end: its pieces, and the :class:`~corral.records.ChatResult` the
    driver's generator returned (``None`` when it returns nothing)."""
    pieces: list[str] = []
    iterator = iter(stream)
    while True:
        try:
            pieces.append(next(iterator))
        except StopIteration as end:
            return pieces, end.value


class LoadedModel:
    """A live model held by a driver. Subclasses implement the tasks their category supports."""

    #: The request parameters of ``chat`` / ``complete`` this model honours (see :meth:`chat`). The
    #: server refuses a request using one outside it with a 400 naming the field; None (a driver written
    #: before this existed) means the sampling parameters only.
    request_fields: ClassVar[frozenset[str] | None] = None

    def __init__(self, model: Model, settings: Mapping[str, Any], loras: Sequence[LoraRequest] = ()):
        self.model = model
        self.settings = dict(settings)
        self.loras = tuple(loras)

    def _unsupported(self, task: str) -> Unsupported:
        return Unsupported(f"model {self.model.name!r} ({self.model.category}) cannot {task}")

    def chat(self, messages: Sequence[Mapping[str, Any]], *, stream: bool = False, **params: Any) -> Any:
        """Answer a conversation (OpenAI-style ``messages``).

        Returns a :class:`corral.records.ChatResult`; with ``stream=True``, an iterator of text pieces as
        they are generated. A generator may ``return`` a ``ChatResult`` with empty text once the answer is
        over: its ``finish_reason`` and token counts go into the server's last chunk and usage. Common ``params``: temperature, top_p, top_k, repeat_penalty, max_tokens,
        stop, seed; drivers ignore what their backend does not have.

        Drivers that list them in :attr:`request_fields` also take, in OpenAI's shapes (read them with
        :mod:`corral.tools`): ``tools``, ``tool_choice``, ``parallel_tool_calls``, ``response_format``,
        ``logprobs`` (bool), ``top_logprobs`` (int) and ``reasoning_effort``. The answer then carries
        ``tool_calls`` / ``reasoning`` / ``logprobs`` in its ``ChatResult``, and a stream may yield
        :class:`corral.tools.Delta` pieces besides plain text.
        """
        raise self._unsupported("chat")

    def complete(self, prompt: str, *, stream: bool = False, **params: Any) -> Any:
        """Continue a plain prompt: a :class:`ChatResult`, or with ``stream=True`` an iterator of pieces."""
        raise self._unsupported("complete text")

    def embed(self, texts: Sequence[str], **params: Any) -> list[list[float]]:
        """One vector per text."""
        raise self._unsupported("embed")

    def count_tokens(self, texts: Sequence[str]) -> list[int] | None:
        """How many tokens the model's tokenizer makes of each text, as it would embed or read them
        (None: the driver cannot tell). The server's usage counts come from here."""
        return None

    def rerank(self, query: str, documents: Sequence[str], **params: Any) -> list[tuple[int, float]]:
        """``(index, score)`` per document, best first."""
        raise self._unsupported("rerank")

    def imagine(self, prompt: str, **params: Any) -> list[Any]:
        """Generated images (PIL images) or video frames."""
        raise self._unsupported("generate images")

    def speak(self, text: str, **params: Any) -> tuple[Any, int]:
        """``(samples, sample_rate)`` of synthesised speech: float samples in [-1, 1], mono."""
        raise self._unsupported("speak")

    def memory(self) -> dict[str, int]:
        """What the loaded model really takes, in bytes: ``{"ram": ..., "vram": ...}``."""
        return {}

    def unload(self) -> None:
        """Free the model's memory. Called once; the handle is not used afterwards."""


class Driver:
    """Loads models of some categories and formats with one backend library."""

    #: Short name shown in ``corral plugins`` and ``corral env``.
    name: ClassVar[str] = ""
    #: The distribution users install to get this driver (used in "install ..." messages).
    distribution: ClassVar[str] = ""
    categories: ClassVar[frozenset[Category]] = frozenset()
    formats: ClassVar[frozenset[Format]] = frozenset()
    #: Import names of the backend libraries (checked without importing them).
    requires: ClassVar[tuple[str, ...]] = ()
    #: How many LoRAs one load may carry: 0 none, 1 one, None any number.
    max_loras: ClassVar[int | None] = 0
    #: Load settings this driver reads from ``corral settings``.
    settings: ClassVar[tuple[SettingSpec, ...]] = ()
    #: Higher wins when several drivers match a model (see the ``select_driver`` hook).
    priority: ClassVar[int] = 0

    @classmethod
    def handles(cls, model: Model) -> bool:
        return model.category in cls.categories and model.format in cls.formats

    @classmethod
    def check(cls) -> BackendStatus:
        """Environment check: is the backend importable, at which version, with which acceleration.

        The default only looks for the ``requires`` modules; override to report acceleration (that may
        import the backend: it runs for ``corral env``, never at start-up).
        """
        return backend_status(cls.name, cls.distribution, cls.requires)

    def load(
        self, model: Model, settings: Mapping[str, Any], loras: Sequence[LoraRequest] = ()
    ) -> LoadedModel:
        """Load ``model`` with its saved ``settings`` and the asked LoRAs; return the live handle."""
        raise NotImplementedError


class TorchDriver(Driver):
    """A driver whose backend runs on torch: its environment check also lists what torch can use here."""

    @classmethod
    def check(cls) -> BackendStatus:
        """The module check, plus the accelerators torch sees (imports torch: ``corral env`` only)."""
        status = super().check()
        if not status.available:
            return status
        return attrs.evolve(status, acceleration=torch_acceleration())
