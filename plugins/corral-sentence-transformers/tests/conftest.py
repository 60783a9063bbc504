"""Fixtures for the sentence-transformers plugin's tests: a plugin host with this plugin in it, and tiny
models built once per session (see st_test_models.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import corral_sentence_transformers

sys.path.insert(0, str(Path(__file__).parent))  # st_test_models

from st_test_models import write_trained_cross_encoder, write_trained_embedding_model  # noqa: E402


@pytest.fixture
def host():
    """The built-in plugins plus this one (entry points stay off, as in the core's tests)."""
    from corral.testing.hosts import installed_host

    with installed_host(corral_sentence_transformers) as fresh:
        yield fresh


@pytest.fixture(scope="session")
def cross_encoder_dir(tmp_path_factory) -> Path:
    """A tiny trained-tokenizer cross-encoder folder, built once per session."""
    return write_trained_cross_encoder(tmp_path_factory.mktemp("st") / "tiny-reranker")


@pytest.fixture(scope="session")
def embedding_dir(tmp_path_factory) -> Path:
    """A tiny trained-tokenizer embedding model folder (32 dims, no Normalize module), built once."""
    return write_trained_embedding_model(tmp_path_factory.mktemp("st") / "tiny-embedder")
