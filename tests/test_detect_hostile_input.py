"""Found in review: deep JSON nesting, vocabularies too long for the header cap, cross-family LoRAs."""

from __future__ import annotations

import os
import struct
import time

import pytest

from corral.detect import detect_path
from corral.detect.bounded import count_reads
from corral.errors import DetectionError

DEEP = b"[" * 200_000 + b"]" * 200_000


def _gguf_kv(key: str, vtype: int, payload: bytes) -> bytes:
    k = key.encode()
    return struct.pack("<Q", len(k)) + k + struct.pack("<I", vtype) + payload


def test_safetensors_header_nested_too_deeply(tmp_path):
    raw = b'{"a":' + DEEP + b"}"
    path = tmp_path / "deep.safetensors"
    path.write_bytes(struct.pack("<Q", len(raw)) + raw)
    with pytest.raises(DetectionError, match="nested too deeply"):
        detect_path(path)


def test_config_json_nested_too_deeply(tmp_path):
    (tmp_path / "config.json").write_bytes(b'{"architectures":' + DEEP + b"}")
    with pytest.raises(DetectionError, match="nested too deeply"):
        detect_path(tmp_path)


def test_gguf_millions_of_empty_tokens_refused_before_walking_them(tmp_path):
    # 9M empty strings: a valid-looking array whose size fields alone (72 MB) exceed the header cap.
    n = 9_000_000
    arch = _gguf_kv("general.architecture", 8, struct.pack("<Q", 5) + b"llama")
    tokens = _gguf_kv("tokenizer.ggml.tokens", 9, struct.pack("<IQ", 8, n))
    head = b"GGUF" + struct.pack("<IQQ", 3, 0, 2) + arch + tokens
    path = tmp_path / "tokens.gguf"
    path.write_bytes(head)
    os.truncate(path, len(head) + 8 * n)  # sparse: the zeros cost no disk
    start = time.perf_counter()
    with count_reads() as counter, pytest.raises(DetectionError, match="limit for headers"):
        detect_path(path)
    assert time.perf_counter() - start < 1.0
    assert counter.bytes < 1024 * 1024


def test_language_model_lora_never_fits_an_image_base(tmp_path):
    from factories_weights import write_peft_lora_dir, write_sd_checkpoint

    from corral.detect import check_lora_fits
    from corral.errors import Incompatible
    from corral.records import Model

    sd = detect_path(write_sd_checkpoint(tmp_path / "sd.safetensors"))
    base = Model(id="b", name="sd", category=sd.category, format=sd.format, path=sd.path, facts=sd.facts)
    peft = detect_path(write_peft_lora_dir(tmp_path / "peft"))
    with pytest.raises(Incompatible, match="peft adapts text-generation models; base sd.safetensors is in category image"):
        check_lora_fits(base, peft)


def test_mmproj_of_another_width_is_not_attached(tmp_path):
    from factories import write_mmproj_gguf, write_tiny_gguf

    from corral.records import Category

    folder = tmp_path / "models"  # pytest's own folder name carries the "mmproj" name hint
    model = write_tiny_gguf(folder / "model.gguf", n_embd=64)
    write_mmproj_gguf(folder / "mmproj-other.gguf", projection_dim=96)
    detection = detect_path(model)
    assert detection.attachments == ()
    assert detection.category == Category.CHAT
