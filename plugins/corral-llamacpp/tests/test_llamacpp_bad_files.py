"""Corrupt, truncated and hostile GGUFs: one clear error, and the process (with the models it holds) lives on.

Models are imported while good and broken afterwards, as a file replaced or cut short on disk would be:
import-time detection would otherwise refuse them before the driver is reached.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from corral.api import DetectionError
from factories import truncate_copy, write_tiny_gguf
from llamacpp_factories import rewrite_gguf
from corral.testing import open_model

FAST = {"threads": 1, "n_ctx": 256}


@pytest.fixture
def held(library, tmp_path):
    """A good model, loaded and kept loaded while the tests break other ones."""
    model = library.import_path(write_tiny_gguf(tmp_path / "good" / "held.gguf"), name="held").model
    with open_model(library, model.name, overrides=FAST) as handle:
        yield handle


@pytest.fixture
def victim(library, tmp_path):
    """A second model, good at import; the tests then damage its file."""
    return library.import_path(write_tiny_gguf(tmp_path / "victim" / "victim.gguf", seed=4), name="victim").model


def replace(path: Path, new: Path) -> None:
    shutil.move(str(new), str(path))


def assert_still_serving(held):
    result = held.complete("hello world", max_tokens=3, temperature=0)
    assert result.completion_tokens >= 3


def load(library, name):
    with open_model(library, name, overrides=FAST):
        pass


def test_truncated_gguf_is_a_clean_error(library, held, victim, tmp_path):
    cut = truncate_copy(victim.path, tmp_path / "cut.gguf", victim.size * 2 // 3)
    replace(victim.path, cut)
    with pytest.raises(DetectionError, match=r"victim.gguf is truncated .* the download or copy is probably"):
        load(library, "victim")
    assert_still_serving(held)


def test_garbage_instead_of_gguf_is_a_clean_error(library, held, victim):
    Path(victim.path).write_bytes(os.urandom(4096))
    with pytest.raises(DetectionError, match="not a GGUF file"):
        load(library, "victim")
    assert_still_serving(held)


def test_missing_file_is_a_clean_error(library, held, victim):
    Path(victim.path).unlink()
    with pytest.raises(DetectionError, match="the model file is gone"):
        load(library, "victim")
    assert_still_serving(held)


def test_gguf_llama_cpp_refuses_is_explained_with_its_reason(library, held, victim, tmp_path):
    # Well-formed (Corral's parser reads it) but a tensor short: llama.cpp's log says which one.
    replace(victim.path, rewrite_gguf(victim.path, tmp_path / "short.gguf", drop_tensor="output_norm.weight"))
    with pytest.raises(DetectionError) as err:
        load(library, "victim")
    assert "llama.cpp could not load this GGUF" in str(err.value)
    assert "tensor 'output_norm.weight' not found" in str(err.value)
    assert_still_serving(held)


def test_unknown_architecture_is_explained(library, held, tmp_path):
    path = write_tiny_gguf(tmp_path / "odd" / "odd.gguf", arch="notanarch")
    model = library.import_path(path, name="odd").model
    with pytest.raises(DetectionError, match="unknown model architecture: 'notanarch'"):
        load(library, model.name)
    assert_still_serving(held)


ABORTS = """
import llama_cpp, sys
llama_cpp.Llama(sys.argv[1], n_ctx=256, verbose=False)
print("survived")
"""


def test_header_that_makes_llama_cpp_abort_is_refused_before_it_loads(library, held, victim, tmp_path):
    hostile = rewrite_gguf(victim.path, tmp_path / "hostile.gguf", set_uint32={"llama.block_count": 0})
    # Handed to llama.cpp directly, this file kills the process (an assertion, SIGABRT).
    raw = subprocess.run([sys.executable, "-c", ABORTS, str(hostile)], capture_output=True, text=True, timeout=120)
    assert raw.returncode != 0 and "survived" not in raw.stdout
    replace(victim.path, hostile)
    with pytest.raises(DetectionError, match=r"llama.block_count is 0; llama.cpp cannot run a model with that"):
        load(library, "victim")
    assert_still_serving(held)


@pytest.mark.parametrize("key", ["llama.embedding_length", "llama.attention.head_count"])
def test_zero_sized_hyperparameters_are_refused(library, held, victim, tmp_path, key):
    replace(victim.path, rewrite_gguf(victim.path, tmp_path / "zero.gguf", set_uint32={key: 0}))
    with pytest.raises(DetectionError, match=f"{key} is 0"):
        load(library, "victim")
    assert_still_serving(held)
