"""Detection dispatch: content first, names second; candidates for scan; LoRA fit; the built-in plugin."""

from __future__ import annotations

import os
import struct

import pytest

from corral.detect import LOOKED_FOR, check_lora_fits, detect_path, iter_candidates, sniff
from corral.errors import DetectionError, Incompatible, NotFound
from corral.plugins import build_host
from corral.records import Category, Format, Kind, Model
from factories import write_lora_gguf, write_mmproj_gguf, write_split_gguf, write_tiny_gguf

# --- dispatch -----------------------------------------------------------------------------------------------


def test_missing_path_is_not_found(tmp_path):
    with pytest.raises(NotFound, match="no such file"):
        detect_path(tmp_path / "nope.gguf")


@pytest.mark.parametrize(
    "name, data",
    [
        ("notes.txt", b"just some words, nothing to see\n"),
        ("random.dat", os.urandom(4096).replace(b"\x80", b"\x81").replace(b"GGUF", b"GGUG")[1:]),
        ("weights", b"\x01\x02\x03"),
    ],
)
def test_unknown_content_says_what_was_looked_for(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(b"x" + data)
    with pytest.raises(DetectionError) as err:
        detect_path(path)
    assert LOOKED_FOR in str(err.value) and str(path) in str(err.value)


def test_empty_file(tmp_path):
    (tmp_path / "empty.gguf").write_bytes(b"")
    with pytest.raises(DetectionError, match="empty"):
        detect_path(tmp_path / "empty.gguf")


def test_gguf_name_without_gguf_content(tmp_path):
    (tmp_path / "fake.gguf").write_bytes(b"hello, I am not a model at all")
    with pytest.raises(DetectionError, match="not a GGUF file"):
        detect_path(tmp_path / "fake.gguf")


def test_old_ggml_file(tmp_path):
    (tmp_path / "old.bin").write_bytes(b"tjgg" + b"\0" * 64)
    with pytest.raises(DetectionError, match="old GGML"):
        detect_path(tmp_path / "old.bin")


def test_content_wins_over_the_name(tmp_path):
    path = write_tiny_gguf(tmp_path / "model.safetensors")
    assert detect_path(path).format == Format.GGUF


def test_relative_path_is_resolved(tmp_path, monkeypatch):
    write_tiny_gguf(tmp_path / "t.gguf")
    monkeypatch.chdir(tmp_path)
    assert detect_path("t.gguf").path == (tmp_path / "t.gguf").resolve()


def test_sniff():
    header = b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'
    assert sniff(struct.pack("<Q", len(header)) + header[:8], 8 + len(header) + 4) == "safetensors"
    assert sniff(struct.pack("<Q", 2**40) + b"{", 1000) is None  # a length no file that size can hold
    assert sniff(b"PK\x03\x04rest", 100) == "pickle"
    assert sniff(b"\x80\x02}q\x00", 100) == "pickle"
    assert sniff(b"GGUF\x03\0\0\0", 100) == "gguf"
    assert sniff(b"\x08\x07\x12\x04", 100) is None  # ONNX protobuf: only the name says it


def test_safetensors_goes_to_its_detector(tmp_path):
    pytest.importorskip("corral.detect.safetensors")
    factories_weights = pytest.importorskip("factories_weights")
    path = factories_weights.write_llm_safetensors(tmp_path / "model.bin")  # content, not the name
    assert detect_path(path).format == Format.SAFETENSORS


# --- candidates ---------------------------------------------------------------------------------------------


def test_iter_candidates(tmp_path):
    root = tmp_path / "tree"
    write_tiny_gguf(root / "a.gguf")
    write_mmproj_gguf(root / "vision" / "mmproj-x.gguf")
    write_split_gguf(root / "big", "m", parts=3)
    (root / "notes.txt").parent.mkdir(parents=True, exist_ok=True)
    (root / "notes.txt").write_text("hi")
    (root / "weights.pt").write_bytes(b"\x80\x02")
    hf = root / "hf-model"
    hf.mkdir()
    (hf / "config.json").write_text("{}")
    (hf / "model.safetensors").write_bytes(b"")
    (hf / "sub").mkdir()
    (hf / "sub" / "inner.gguf").write_bytes(b"")
    gguf_repo = root / "repo-GGUF"  # a GGUF repo that ships the original config.json
    write_tiny_gguf(gguf_repo / "m-Q4_K_M.gguf")
    (gguf_repo / "config.json").write_text("{}")
    hidden = root / ".cache"
    write_tiny_gguf(hidden / "h.gguf")
    (root / ".hidden.gguf").write_bytes(b"")
    got = [p.relative_to(root.resolve()).as_posix() for p in iter_candidates(root)]
    assert got == [
        "a.gguf",
        "big/m-00001-of-00003.gguf",
        "hf-model",
        "repo-GGUF/m-Q4_K_M.gguf",
        "vision/mmproj-x.gguf",
        "weights.pt",
    ]
    assert all(p.is_absolute() for p in iter_candidates(root))
    assert list(iter_candidates(hf)) == [hf.resolve()]


def test_iter_candidates_survives_a_symlink_loop(tmp_path):
    write_tiny_gguf(tmp_path / "d" / "a.gguf")
    (tmp_path / "d" / "loop").symlink_to(tmp_path / "d")
    assert [p.name for p in iter_candidates(tmp_path)] == ["a.gguf"]


# --- LoRA fit -----------------------------------------------------------------------------------------------


def _model(detection) -> Model:
    return Model(
        id="m1", name="base", category=detection.category or Category.CHAT, format=detection.format,
        path=detection.path, paths=detection.paths, facts=detection.facts,
    )  # fmt: skip


@pytest.fixture
def base(tmp_path):
    return _model(detect_path(write_tiny_gguf(tmp_path / "base.gguf")))


def test_matching_lora_fits(base, tmp_path):
    lora = detect_path(write_lora_gguf(tmp_path / "fits.gguf"))
    assert lora.kind == Kind.LORA
    check_lora_fits(base, lora)


def test_lora_with_other_width_names_the_shapes(base, tmp_path):
    lora = detect_path(write_lora_gguf(tmp_path / "wide.gguf", n_embd=96))
    with pytest.raises(Incompatible) as err:
        check_lora_fits(base, lora)
    msg = str(err.value)
    assert "wide.gguf" in msg and "base.gguf" in msg
    assert "blk.0.attn_q.weight: LoRA expects 96 inputs, base has 64" in msg
    assert "more" in msg  # four mismatching tensors, three shown


def test_lora_for_more_layers_than_the_base(base, tmp_path):
    lora = detect_path(write_lora_gguf(tmp_path / "deep.gguf", n_layers=3))
    with pytest.raises(Incompatible, match="blk.2.attn_q.weight: the LoRA adapts a tensor the base does not have"):
        check_lora_fits(base, lora)


def test_lora_for_another_architecture(base, tmp_path):
    lora = detect_path(write_lora_gguf(tmp_path / "gemma-lora.gguf", base_arch="gemma3"))
    with pytest.raises(Incompatible, match="LoRA gemma-lora.gguf is for gemma3, base base.gguf is llama"):
        check_lora_fits(base, lora)


def test_lora_against_a_split_base(tmp_path):
    parts = write_split_gguf(tmp_path / "split", "base", parts=2)
    base = _model(detect_path(parts[0]))
    check_lora_fits(base, detect_path(write_lora_gguf(tmp_path / "fits.gguf")))
    with pytest.raises(Incompatible, match="LoRA expects 96 inputs"):
        check_lora_fits(base, detect_path(write_lora_gguf(tmp_path / "wide.gguf", n_embd=96)))


# --- the built-in plugin ------------------------------------------------------------------------------------


def test_builtin_plugin_detects_and_checks(tmp_path):
    host = build_host(entry_points=False)
    path = write_tiny_gguf(tmp_path / "tiny.gguf")
    detection = host.first_result("detect_model", path=path)
    assert detection.format == Format.GGUF and detection.facts.layers == 2
    base = _model(detection)
    fits = detect_path(write_lora_gguf(tmp_path / "l.gguf"))
    assert host.first_result("check_lora", base=base, lora=fits) is True
    narrow = detect_path(write_lora_gguf(tmp_path / "w.gguf", n_embd=32))
    with pytest.raises(Incompatible):
        host.first_result("check_lora", base=base, lora=narrow)
    text = tmp_path / "readme.txt"
    text.write_text("not a model")
    with pytest.raises(DetectionError, match="looked for"):
        host.first_result("detect_model", path=text)
