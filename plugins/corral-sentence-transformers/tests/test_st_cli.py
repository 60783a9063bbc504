"""`corral embed`, `corral rerank`, `corral show` and `corral settings` on real models, in-process and as a
real `corral` process that finds the plugin through its entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from corral.testing.cli import assert_clean_error, ok

CAT, KITTEN, STOCKS = "a cat sits on the mat", "a kitten rests on a rug", "stock prices fell"


def cosine(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.fixture
def minilm(run, minilm_path):
    ok(run("import", minilm_path, "--name", "minilm"))
    return "minilm"


@pytest.fixture
def tiny(run, embedding_dir):
    ok(run("import", embedding_dir, "--name", "tiny"))
    return "tiny"


@pytest.fixture
def reranker(run, cross_encoder_dir):
    ok(run("import", cross_encoder_dir, "--name", "reranker"))
    return "reranker"


def test_show_names_the_embedding_width(run, minilm):
    assert "embedding dims     384" in ok(run("show", minilm)).stdout


def test_embed_prints_json_vectors(run, minilm):
    plain = json.loads(ok(run("embed", minilm, CAT, KITTEN, STOCKS)).stdout)
    as_json = json.loads(ok(run("embed", minilm, CAT, KITTEN, STOCKS, "--json")).stdout)
    assert [len(v) for v in plain] == [384, 384, 384]
    np.testing.assert_allclose(plain, as_json, atol=1e-7)
    cat, kitten, stocks = plain
    assert cosine(cat, kitten) > cosine(cat, stocks)


def test_embed_reads_a_file_and_stdin(run, minilm, tmp_path):
    texts = tmp_path / "texts.txt"
    texts.write_text(f"{CAT}\n\n{KITTEN}\r\n{STOCKS}\n")
    from_args = json.loads(ok(run("embed", minilm, CAT, KITTEN, STOCKS)).stdout)
    from_file = json.loads(ok(run("embed", minilm, "--file", texts, "--batch-size", "1")).stdout)
    from_pipe = json.loads(ok(run("embed", minilm, input=texts.read_text())).stdout)
    from_dash = json.loads(ok(run("embed", minilm, "-", input=texts.read_text())).stdout)
    for vectors in (from_file, from_pipe, from_dash):
        assert len(vectors) == 3  # the blank line is no text
        np.testing.assert_allclose(vectors, from_args, atol=1e-5)


def test_embed_normalize_flags_override_the_setting(run, tiny):
    def norms(*args):
        return [float(np.linalg.norm(v)) for v in json.loads(ok(run("embed", tiny, CAT, STOCKS, *args)).stdout)]

    assert all(abs(n - 1) > 1e-3 for n in norms())
    assert all(abs(n - 1) < 1e-5 for n in norms("--normalize"))
    ok(run("settings", tiny, "--set", "normalize=true"))
    assert all(abs(n - 1) < 1e-5 for n in norms())
    assert all(abs(n - 1) > 1e-3 for n in norms("--no-normalize"))


def test_settings_are_checked(run, tiny):
    assert_clean_error(run("settings", tiny, "--set", "dtype=int8"), "dtype must be one of")
    assert_clean_error(run("settings", tiny, "--set", "batch_size=0"), "batch_size must be at least 1")
    assert_clean_error(run("settings", tiny, "--set", "device=tpu"), "device 'tpu' is not auto, cpu, cuda, cuda:N or mps")
    ok(run("settings", tiny, "--set", "device=auto"))  # auto reads as unset: the driver's own choice
    assert len(json.loads(ok(run("embed", tiny, CAT)).stdout)) == 1


def test_rerank_prints_documents_best_first(run, reranker):
    docs = [CAT, STOCKS, KITTEN]
    ranked = json.loads(ok(run("rerank", reranker, "where is the cat", *docs, "--json")).stdout)
    assert sorted(r["index"] for r in ranked) == [0, 1, 2]
    assert [r["document"] for r in ranked] == [docs[r["index"]] for r in ranked]
    assert [r["score"] for r in ranked] == sorted((r["score"] for r in ranked), reverse=True)
    top = json.loads(ok(run("rerank", reranker, "where is the cat", *docs, "--top-k", "1", "--json")).stdout)
    assert top == ranked[:1]
    table = ok(run("rerank", reranker, "where is the cat", *docs)).stdout.splitlines()
    assert table[0].split() == ["SCORE", "INDEX", "DOCUMENT"]
    assert [line.split()[1] for line in table[1:]] == [str(r["index"]) for r in ranked]


# --- bad input ----------------------------------------------------------------------------------------


def test_embed_with_nothing_to_embed(run, tiny, tmp_path):
    assert_clean_error(run("embed", tiny), "no texts given", "--file")
    blank = tmp_path / "blank.txt"
    blank.write_text("\n  \n")
    assert_clean_error(run("embed", tiny, "--file", blank), "holds no texts")
    assert_clean_error(run("embed", tiny, ""), "input 0 is an empty text")


def test_wrong_task_for_the_model(run, tiny, reranker):
    assert_clean_error(run("rerank", tiny, "query", "a document"), "is an embedding model and cannot rerank")
    assert_clean_error(run("embed", reranker, "text"), "is a rerank (cross-encoder) model and cannot embed")
    assert_clean_error(run("rerank", reranker, "   ", "a document"), "the query is empty")
    assert_clean_error(run("rerank", reranker, "query", "a document", "--top-k", "0"), "top_n must be at least 1")


def test_import_of_a_folder_without_weights(run, tmp_path, embedding_dir):
    import shutil

    folder = shutil.copytree(embedding_dir, tmp_path / "half-downloaded")
    (folder / "model.safetensors").unlink()
    assert_clean_error(run("import", folder), "no weight files")


# --- a real corral process ----------------------------------------------------------------------------


def test_corral_embed_process_finds_the_plugin(tmp_path, minilm_path):
    """Entry-point discovery, stdin, and nothing but JSON on stdout."""
    env = {**os.environ, "CORRAL_HOME": str(tmp_path / "home")}
    env.pop("CORRAL_LOAD_PLUGINS", None)

    def corral(*args, stdin=None):
        return subprocess.run([sys.executable, "-m", "corral", *map(str, args)], input=stdin, capture_output=True,
                              text=True, env=env, timeout=300)

    assert corral("import", minilm_path, "--name", "minilm").returncode == 0
    out = corral("embed", "minilm", stdin=f"{CAT}\n{KITTEN}\n{STOCKS}\n")
    assert out.returncode == 0, out.stderr
    cat, kitten, stocks = json.loads(out.stdout)
    assert len(cat) == 384
    assert cosine(cat, kitten) > cosine(cat, stocks)
