"""The core's own registrations, made through the same hooks a third-party plugin uses: the built-in
categories (chat, multimodal, text-generation, embedding, rerank, image, tts), formats, and the store
layouts ``corral scan`` adopts (Hugging Face cache, Ollama, LM Studio) and the executors ``corral serve``
chooses from (``runner``, ``in-process``)."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Callable, ClassVar, Iterator

from corral import hookimpl
from corral.ext.categories import BUILTIN_CATEGORIES, BUILTIN_FORMATS, CategorySpec, FormatSpec
from corral.ext.executor import ExecutorSpec
from corral.ext.layout import Found, StoreLayout


class _CoreLayout(StoreLayout):
    """A layout whose reader is a module of :mod:`corral.adopt`, imported when a scan uses it."""

    module: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        cls.option = f"--{cls.name}"

    @classmethod
    def default_roots(cls) -> list[Path]:
        return importlib.import_module(cls.module).default_roots()

    @classmethod
    def find(cls, root: Path) -> Iterator[Found]:
        return importlib.import_module(cls.module).find(root)


class HfCacheLayout(_CoreLayout):
    name, label, module = "hf-cache", "Hugging Face cache", "corral.adopt.hf_cache"


class OllamaLayout(_CoreLayout):
    name, label, module = "ollama", "Ollama models", "corral.adopt.ollama"


class LmStudioLayout(_CoreLayout):
    name, label, module = "lmstudio", "LM Studio models", "corral.adopt.lmstudio"


@hookimpl(tryfirst=True)
def register_categories(register: Callable[[CategorySpec], None]) -> None:
    for spec in BUILTIN_CATEGORIES:
        register(spec)


@hookimpl(tryfirst=True)
def register_formats(register: Callable[[FormatSpec], None]) -> None:
    for spec in BUILTIN_FORMATS:
        register(spec)


@hookimpl(tryfirst=True)
def register_store_layouts(register: Callable[[type[StoreLayout]], None]) -> None:
    for layout in (HfCacheLayout, OllamaLayout, LmStudioLayout):
        register(layout)


#: The core's executors, named by module so that registering them imports nothing of the runtime.
EXECUTORS = (
    ExecutorSpec("runner", "corral.runtime.executor:RunnerProcesses",
                 "one runner process per loaded model (the default): a crash fails that model's requests only"),
    ExecutorSpec("in-process", "corral.runtime.executor:InProcess",
                 "every model in the server's own process: no isolation, no overhead"),
)


@hookimpl(tryfirst=True)
def register_executors(register: Callable[[ExecutorSpec], None]) -> None:
    for spec in EXECUTORS:
        register(spec)
