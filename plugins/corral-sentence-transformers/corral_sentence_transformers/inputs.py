"""Checks on what callers hand ``embed`` and ``rerank``: texts, queries, documents and per-call params.

The CLI and the HTTP server both call these methods, so every bad input becomes one Corral error here,
naming the model and what is wrong, before the backend sees it.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from corral.api import CorralError, InvalidInput, InvalidSetting


class EmptyInput(InvalidInput):
    """Nothing to embed or rank: no texts, an empty text, no documents, an empty query."""


def texts_to_embed(name: str, texts: Sequence[str] | str) -> list[str]:
    """The texts as a list; a lone string is one text (as OpenAI's ``input`` allows)."""
    if isinstance(texts, str):
        texts = [texts]
    try:
        texts = list(texts)
    except TypeError:
        raise CorralError(f"{name}: embed wants a list of texts, got {type(texts).__name__}") from None
    if not texts:
        raise EmptyInput(f"{name}: no texts to embed; give at least one")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise CorralError(f"{name}: input {i} is a {type(text).__name__}, not text")
        if not text:
            raise EmptyInput(f"{name}: input {i} is an empty text; drop it or give it content")
    return texts


def query_and_documents(name: str, query: str, documents: Sequence[str]) -> list[str]:
    """The documents as a list, after checking the query and every document are text."""
    if not isinstance(query, str):
        raise CorralError(f"{name}: the query is a {type(query).__name__}, not text")
    if not query.strip():
        raise EmptyInput(f"{name}: the query is empty; rerank needs a query to score documents against")
    if isinstance(documents, str):
        documents = [documents]
    documents = list(documents)
    if not documents:
        raise EmptyInput(f"{name}: no documents to rerank; give at least one")
    for i, doc in enumerate(documents):
        if not isinstance(doc, str):
            raise CorralError(f"{name}: document {i} is a {type(doc).__name__}, not text")
    return documents


def int_param(name: str, params: Mapping[str, Any], key: str, default: int | None,
              minimum: int = 1, maximum: int | None = None) -> int | None:
    """An integer call parameter (``None`` or absent: ``default``), range-checked."""
    value = params.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            value = int(str(value))
        except ValueError:
            raise InvalidSetting(f"{name}: {key} wants a whole number, got {value!r}") from None
    if value < minimum:
        raise InvalidSetting(f"{name}: {key} must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise InvalidSetting(f"{name}: {key} must be at most {maximum}, got {value}")
    return value


def bool_param(name: str, params: Mapping[str, Any], key: str, default: bool) -> bool:
    """A yes/no call parameter (``None`` or absent: ``default``)."""
    value = params.get(key)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    lowered = str(value).lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise InvalidSetting(f"{name}: {key} wants true or false, got {value!r}")
