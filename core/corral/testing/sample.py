"""What a plugin hands the conformance suite to load (a :class:`Sample`), and how each task is run and
its answer checked."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Mapping

import attrs

from corral.ext.categories import TASKS
from corral.ext.driver import LoadedModel
from corral.records import Category, ChatResult
from corral.words import a_or_an

#: The task a sample runs when it names none: the first of these its category supports.
TASK_ORDER = ("chat", "complete", "embed", "rerank", "imagine", "speak")

_MESSAGES = [{"role": "user", "content": "Say hello to the corral."}]
_PROMPT = "The corral model is"
_TEXTS = ["hello world", "the corral model"]
_QUERY = "what is a corral?"
_DOCUMENTS = ["a pen that holds horses", "a kind of blue cheese", "a fence around cattle"]


@attrs.frozen
class Sample:
    """A model of the plugin's own that the suite imports, loads, runs and unloads.

    :param path: the file or folder to import (as ``corral import PATH`` would).
    :param task: what to run: ``chat``, ``complete``, ``embed``, ``rerank``, ``imagine`` or ``speak``;
        by default the first task the model's category supports.
    :param category: passed to the import, for formats whose category detection cannot tell.
    :param settings: load settings for this run (e.g. ``{"n_ctx": 256}`` to keep it small).
    :param params: extra keyword arguments for the task call (e.g. ``{"steps": 1}`` for ``imagine``).
    :param check: called with the task's answer for checks of the plugin's own; raise to fail.
    """

    path: Path = attrs.field(converter=Path)
    task: str | None = None
    category: Category | None = attrs.field(default=None, converter=attrs.converters.optional(Category))
    settings: Mapping[str, Any] = attrs.field(factory=dict)
    params: Mapping[str, Any] = attrs.field(factory=dict)
    check: Callable[[Any], None] | None = None

    def task_for(self, category: Category) -> str:
        """The task to run on a model of ``category``; an impossible pairing fails with the reason."""
        allowed = TASKS[category]
        if self.task is None:
            return next(t for t in TASK_ORDER if t in allowed)
        assert self.task in allowed, (
            f"sample {self.path.name}: {a_or_an(category)} model cannot {self.task!r} (it can: {', '.join(sorted(allowed))})"
        )
        return self.task


def unsupported_task(category: Category) -> str:
    """A task a ``category`` model cannot do; drivers must answer it with ``Unsupported``."""
    return next(t for t in reversed(TASK_ORDER) if t not in TASKS[category])


def call_task(handle: LoadedModel, task: str, params: Mapping[str, Any] | None = None) -> Any:
    """Call ``task`` on a loaded model with the suite's standard input."""
    params = params or {}
    if task == "chat":
        return handle.chat(list(_MESSAGES), **{"max_tokens": 8, **params})
    if task == "complete":
        return handle.complete(_PROMPT, **{"max_tokens": 8, **params})
    if task == "embed":
        return handle.embed(list(_TEXTS), **params)
    if task == "rerank":
        return handle.rerank(_QUERY, list(_DOCUMENTS), **params)
    if task == "imagine":
        return handle.imagine("a red square on a white background", **params)
    if task == "speak":
        return handle.speak("Hello from the corral.", **params)
    raise ValueError(f"unknown task {task!r}")


def stream_task(handle: LoadedModel, task: str, params: Mapping[str, Any] | None = None) -> list[Any]:
    """Call a text task with ``stream=True`` and collect the pieces."""
    params = params or {}
    if task == "chat":
        return list(handle.chat(list(_MESSAGES), stream=True, **{"max_tokens": 8, **params}))
    return list(handle.complete(_PROMPT, stream=True, **{"max_tokens": 8, **params}))


def check_answer(task: str, answer: Any) -> None:
    """Fail (``AssertionError``) unless ``answer`` has the shape :class:`LoadedModel` documents for ``task``."""
    if task in ("chat", "complete"):
        assert isinstance(answer, ChatResult), f"{task} returned {type(answer).__name__}, not a ChatResult"
        assert isinstance(answer.text, str), f"{task} returned a ChatResult whose text is {answer.text!r}"
    elif task == "embed":
        assert isinstance(answer, list) and len(answer) == len(_TEXTS), (
            f"embed of {len(_TEXTS)} texts returned {_describe(answer)}, not one vector per text"
        )
        dims = {len(v) for v in answer}
        assert len(dims) == 1 and dims != {0}, f"embed returned vectors of lengths {sorted(dims)}"
        assert all(math.isfinite(float(x)) for v in answer for x in v), "embed returned non-finite numbers"
    elif task == "rerank":
        indices = [int(i) for i, _ in answer]
        scores = [float(s) for _, s in answer]
        assert sorted(indices) == list(range(len(_DOCUMENTS))), f"rerank returned indices {indices}"
        assert scores == sorted(scores, reverse=True), f"rerank scores are not best first: {scores}"
    elif task == "imagine":
        assert isinstance(answer, list) and answer, f"imagine returned {_describe(answer)}, not a list of images"
    elif task == "speak":
        samples, rate = answer
        assert isinstance(rate, int) and rate > 0, f"speak returned sample rate {rate!r}"
        assert len(samples) > 0, "speak returned no samples"


def check_stream(task: str, pieces: list[Any]) -> None:
    """Fail unless a streamed answer came as ``str`` pieces."""
    assert all(isinstance(p, str) for p in pieces), (
        f"{task} with stream=True yielded {sorted({type(p).__name__ for p in pieces})}, not str pieces"
    )


def _describe(value: Any) -> str:
    size = f" of {len(value)}" if hasattr(value, "__len__") else ""
    return f"a {type(value).__name__}{size}"
