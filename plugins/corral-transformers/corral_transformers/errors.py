"""Errors of this plugin: Corral errors, so the CLI prints one line and exits non-zero."""

from __future__ import annotations

from corral.errors import CorralError


class OutputNotWritable(CorralError):
    """The output directory cannot be created or written (or holds files and --force was not given)."""

    exit_code = 11
    http_status = 409


class CorpusError(CorralError):
    """A tokenizer training corpus that is missing, empty, not UTF-8 text, or too small."""

    exit_code = 12
    http_status = 422


class TokenizerError(CorralError):
    """A tokenizer directory that transformers cannot load, or that does not fit the model."""

    exit_code = 13
    http_status = 422
