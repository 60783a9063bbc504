"""Corral's first-party plugins: which distribution serves what, for "install ..." messages."""

from __future__ import annotations

from corral.records import Category, Format

LLAMACPP = "corral-llamacpp"
TRANSFORMERS = "corral-transformers"
SENTENCE_TRANSFORMERS = "corral-sentence-transformers"
DIFFUSERS = "corral-diffusers"
KOKORO = "corral-kokoro"

SOURCES = {"huggingface": "corral-huggingface", "modelscope": "corral-modelscope"}


def driver_distribution(category: Category, format: Format) -> str | None:
    """The first-party plugin that loads models of this category and format."""
    if format == Format.GGUF and category in (Category.CHAT, Category.MULTIMODAL):
        return LLAMACPP
    if category == Category.CHAT:
        return TRANSFORMERS
    if category == Category.MULTIMODAL:
        return None  # no first-party plugin runs Hugging Face vision-language folders yet
    return {
        Category.TEXT_GENERATION: TRANSFORMERS,
        Category.EMBEDDING: SENTENCE_TRANSFORMERS,
        Category.RERANK: SENTENCE_TRANSFORMERS,
        Category.IMAGE: DIFFUSERS,
        Category.TTS: KOKORO,
    }.get(category)


def source_distribution(source: str) -> str:
    return SOURCES.get(source, f"a corral plugin providing the {source!r} source")
