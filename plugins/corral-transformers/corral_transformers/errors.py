"""Errors of this plugin: the core's classes, so the CLI prints one line and exits with their code."""

from __future__ import annotations

from corral.api import InvalidInput, OutputNotWritable, TokenizerError


class CorpusError(InvalidInput):
    """A tokenizer training corpus that is missing, empty, not UTF-8 text, or too small."""


__all__ = ["CorpusError", "OutputNotWritable", "TokenizerError"]
