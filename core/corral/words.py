"""Small wording helpers for messages built from values ("an embedding model", not "a embedding model")."""

from __future__ import annotations


def a_or_an(word: object) -> str:
    """``word`` with its indefinite article by its first letter: ``an embedding``, ``a chat``."""
    text = str(word)
    return f"{'an' if text[:1].lower() in 'aeiou' and text[:1] else 'a'} {text}"
