"""The core's own registrations, made through the same hooks a third-party plugin uses: the built-in
categories (chat, multimodal, text-generation, embedding, rerank, image, tts) and formats."""

from __future__ import annotations

from typing import Callable

from corral import hookimpl
from corral.ext.categories import BUILTIN_CATEGORIES, BUILTIN_FORMATS, CategorySpec, FormatSpec


@hookimpl(tryfirst=True)
def register_categories(register: Callable[[CategorySpec], None]) -> None:
    for spec in BUILTIN_CATEGORIES:
        register(spec)


@hookimpl(tryfirst=True)
def register_formats(register: Callable[[FormatSpec], None]) -> None:
    for spec in BUILTIN_FORMATS:
        register(spec)
