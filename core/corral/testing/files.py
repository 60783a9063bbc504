"""Small model files for plugin tests, written with the standard library only.

A plugin's tests must run where only ``corral`` is installed, so nothing here needs numpy or the
``gguf`` package. :func:`write_tiny_gguf` writes a real llama-layout GGUF (F32 random weights, a
SentencePiece-style vocabulary with byte fallback) that the core detects as a chat model and llama.cpp
loads; :func:`write_tiny_safetensors` writes a valid safetensors file; :func:`write_foreign_paths` lays
out the files a plugin's detector is shown to prove it answers ``None`` for what it does not own.
"""

from __future__ import annotations

import json
import random
import struct
import sys
from array import array
from pathlib import Path
from typing import Any

__all__ = ["write_foreign_paths", "write_tiny_gguf", "write_tiny_safetensors"]

# GGUF value types (gguf's GGUFValueType).
_U32, _I32, _F32, _BOOL, _STRING, _ARRAY = 4, 5, 6, 7, 8, 9
_ALIGNMENT = 32
_F32_TENSOR = 0  # ggml type F32

#: Word pieces after the byte tokens, so the vocabulary tokenises real words, not only bytes.
WORD_PIECES = ("▁hello", "▁world", "▁the", "▁a", "▁is", "▁corral", "▁model", "ing", "ed", "s")


def _string(text: str) -> bytes:
    data = text.encode("utf-8")
    return struct.pack("<Q", len(data)) + data


def _value(vtype: int, value: Any) -> bytes:
    if vtype == _STRING:
        return _string(value)
    return struct.pack({_U32: "<I", _I32: "<i", _F32: "<f", _BOOL: "<?"}[vtype], value)


def _kv(key: str, vtype: int, value: Any) -> bytes:
    return _string(key) + struct.pack("<I", vtype) + _value(vtype, value)


def _kv_array(key: str, etype: int, values: list[Any]) -> bytes:
    head = _string(key) + struct.pack("<IIQ", _ARRAY, etype, len(values))
    return head + b"".join(_value(etype, v) for v in values)


def _vocab() -> tuple[list[str], list[float], list[int]]:
    """``<unk>``, ``<s>``, ``</s>``, the 256 byte tokens, then :data:`WORD_PIECES`."""
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + list(WORD_PIECES)
    types = [2, 3, 3] + [6] * 256 + [1] * len(WORD_PIECES)  # unknown, control, byte, normal
    scores = [0.0] * 259 + [-float(i + 1) for i in range(len(WORD_PIECES))]
    return tokens, scores, types


def write_tiny_gguf(
    path: Path | str,
    *,
    n_layers: int = 2,
    n_embd: int = 64,
    n_head: int = 4,
    n_head_kv: int = 2,
    n_ff: int = 128,
    context_length: int = 2048,
    name: str = "tiny",
    seed: int = 0,
    pooling_type: int | None = None,
) -> Path:
    """Write a tiny random-weight llama GGUF (about 450 KB) and return its path.

    The core detects it as a ``chat`` model in ``gguf`` format; llama.cpp loads it and generates
    (meaningless) text, fast, which makes it a sample for any GGUF chat driver. With ``pooling_type``
    (llama.cpp's: 1 mean, 4 rank) it is an ``embedding`` (or ``rerank``) model instead.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tokens, scores, types = _vocab()
    n_vocab, head_dim = len(tokens), n_embd // n_head
    n_kv = head_dim * n_head_kv
    kvs = [
        _kv("general.architecture", _STRING, "llama"),
        _kv("general.name", _STRING, name),
        _kv("general.file_type", _U32, 0),
        _kv("llama.context_length", _U32, context_length),
        _kv("llama.embedding_length", _U32, n_embd),
        _kv("llama.block_count", _U32, n_layers),
        _kv("llama.feed_forward_length", _U32, n_ff),
        _kv("llama.attention.head_count", _U32, n_head),
        _kv("llama.attention.head_count_kv", _U32, n_head_kv),
        _kv("llama.attention.layer_norm_rms_epsilon", _F32, 1e-5),
        _kv("llama.rope.dimension_count", _U32, head_dim),
        _kv("llama.rope.freq_base", _F32, 10000.0),
        _kv("tokenizer.ggml.model", _STRING, "llama"),
        _kv("tokenizer.ggml.pre", _STRING, "default"),
        _kv_array("tokenizer.ggml.tokens", _STRING, tokens),
        _kv_array("tokenizer.ggml.scores", _F32, scores),
        _kv_array("tokenizer.ggml.token_type", _I32, types),
        _kv("tokenizer.ggml.unknown_token_id", _U32, 0),
        _kv("tokenizer.ggml.bos_token_id", _U32, 1),
        _kv("tokenizer.ggml.eos_token_id", _U32, 2),
        _kv("tokenizer.ggml.add_bos_token", _BOOL, True),
        _kv("tokenizer.ggml.add_eos_token", _BOOL, False),
    ]
    if pooling_type is not None:
        kvs.append(_kv("llama.pooling_type", _U32, pooling_type))
    # (name, shape as (rows=out, cols=in), random?) -- GGUF stores the dims reversed (ne0 = in).
    shapes: list[tuple[str, tuple[int, ...], bool]] = [("token_embd.weight", (n_vocab, n_embd), True)]
    for i in range(n_layers):
        p = f"blk.{i}."
        shapes += [
            (p + "attn_norm.weight", (n_embd,), False),
            (p + "attn_q.weight", (n_embd, n_embd), True),
            (p + "attn_k.weight", (n_kv, n_embd), True),
            (p + "attn_v.weight", (n_kv, n_embd), True),
            (p + "attn_output.weight", (n_embd, n_embd), True),
            (p + "ffn_norm.weight", (n_embd,), False),
            (p + "ffn_gate.weight", (n_ff, n_embd), True),
            (p + "ffn_up.weight", (n_ff, n_embd), True),
            (p + "ffn_down.weight", (n_embd, n_ff), True),
        ]
    shapes += [("output_norm.weight", (n_embd,), False), ("output.weight", (n_vocab, n_embd), True)]

    rng = random.Random(seed)
    infos, blobs, offset = [], [], 0
    for tensor, shape, noisy in shapes:
        count = 1
        for d in shape:
            count *= d
        values = array("f", (rng.gauss(0.0, 0.02) for _ in range(count)) if noisy else [1.0] * count)
        blob = values.tobytes() if sys.byteorder == "little" else _swapped(values)
        dims = tuple(reversed(shape))
        infos.append(_string(tensor) + struct.pack(f"<I{len(dims)}QIQ", len(dims), *dims, _F32_TENSOR, offset))
        pad = -len(blob) % _ALIGNMENT
        blobs.append(blob + b"\0" * pad)
        offset += len(blob) + pad
    header = b"GGUF" + struct.pack("<IQQ", 3, len(shapes), len(kvs)) + b"".join(kvs) + b"".join(infos)
    header += b"\0" * (-len(header) % _ALIGNMENT)
    tmp = path.with_name(path.name + ".partial")
    tmp.write_bytes(header + b"".join(blobs))
    tmp.replace(path)
    return path


def _swapped(values: array) -> bytes:
    copy = array("f", values)
    copy.byteswap()
    return copy.tobytes()


def write_tiny_safetensors(path: Path | str, tensors: dict[str, tuple[int, ...]] | None = None) -> Path:
    """Write a valid safetensors file of zero-filled F32 tensors (default: one 4x4 ``weight``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = tensors or {"weight": (4, 4)}
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for tensor, shape in tensors.items():
        size = 4
        for d in shape:
            size *= d
        header[tensor] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the format pads the header with spaces to 8 bytes
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * offset)
    return path


def write_foreign_paths(directory: Path | str) -> dict[str, Path]:
    """Files and a folder of common kinds, by kind: ``gguf``, ``safetensors``, ``text``, ``directory``.

    The conformance suite shows each one that a plugin does not declare a format for to the plugin's
    ``detect_model`` and expects ``None``.
    """
    directory = Path(directory)
    notes = directory / "notes"
    notes.mkdir(parents=True, exist_ok=True)
    (notes / "README.md").write_text("# Notes\n\nNot a model.\n")
    (notes / "todo.txt").write_text("buy hay\n")
    text = directory / "letter.txt"
    text.write_text("Dear reader, this is plain text, not a model.\n")
    return {
        "gguf": write_tiny_gguf(directory / "tiny-chat.gguf"),
        "safetensors": write_tiny_safetensors(directory / "weights.safetensors"),
        "text": text,
        "directory": notes,
    }
