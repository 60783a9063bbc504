"""Test file generators: tiny real GGUF models, mmproj and LoRA files, and hostile headers.

Everything here uses only numpy and the ``gguf`` writer, so the files are what llama.cpp itself would
read: the tiny model loads in llama.cpp (all llama tensors, hparams and a real SentencePiece-style
vocabulary), the LoRA is laid out as ``convert_lora_to_gguf.py`` writes it.

Hostile headers are built by hand with :mod:`struct`, because the writer refuses to produce them.
"""

from __future__ import annotations

import os
import shutil
import struct
from pathlib import Path

import numpy as np

__all__ = [
    "WORD_PIECES",
    "gguf_kv_string",
    "make_sparse_copy",
    "tiny_vocab",
    "truncate_copy",
    "write_gguf_bytes_with",
    "write_lora_gguf",
    "write_mmproj_gguf",
    "write_split_gguf",
    "write_tiny_gguf",
]

#: Word pieces after the byte tokens, so the vocabulary tokenises real words, not only bytes.
WORD_PIECES = ("▁hello", "▁world", "▁the", "▁a", "▁is", "▁corral", "▁model", "ing", "ed", "s")


def tiny_vocab() -> tuple[list[str], list[float], list[int]]:
    """Tokens, scores and token types of a minimal llama (SentencePiece) vocabulary.

    ``<unk>``, ``<s>``, ``</s>``, the 256 byte tokens ``<0x00>``..``<0xFF>`` (byte fallback), then
    :data:`WORD_PIECES`.
    """
    import gguf

    tokens = ["<unk>", "<s>", "</s>"]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [gguf.TokenType.BYTE] * 256
    tokens += list(WORD_PIECES)
    types += [gguf.TokenType.NORMAL] * len(WORD_PIECES)
    scores = [0.0] * 259 + [-float(i + 1) for i in range(len(WORD_PIECES))]
    return tokens, scores, [int(t) for t in types]


def _rand(rng: np.random.Generator, shape: tuple[int, ...], dtype: type) -> np.ndarray:
    return (rng.standard_normal(shape) * 0.02).astype(dtype)


def write_tiny_gguf(
    path: Path | str,
    *,
    arch: str = "llama",
    n_layers: int = 2,
    n_embd: int = 64,
    n_head: int = 4,
    n_head_kv: int = 2,
    n_ff: int = 128,
    context_length: int = 2048,
    file_type: int = 1,
    chat_template: str | None = None,
    name: str | None = None,
    seed: int = 0,
) -> Path:
    """Write a tiny random-weight llama-layout GGUF that llama.cpp can load; returns ``path``.

    ``file_type`` 1 stores matrices as F16 (norms stay F32, as llama.cpp's converter does), 0 stores
    everything as F32. ``arch`` names the architecture keys (``{arch}.context_length`` ...) and
    ``general.architecture``; only "llama" is guaranteed loadable by llama.cpp.
    Parameter count: see :func:`tiny_parameter_count`.
    """
    import gguf

    if file_type not in (0, 1):
        raise ValueError("write_tiny_gguf writes F32 (file_type 0) or F16 (file_type 1) only")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tokens, scores, types = tiny_vocab()
    n_vocab = len(tokens)
    head_dim = n_embd // n_head
    n_q = head_dim * n_head  # n_embd, unless n_head does not divide it (a broken conversion)
    n_kv = head_dim * n_head_kv
    mat = np.float16 if file_type == 1 else np.float32
    rng = np.random.default_rng(seed)

    w = gguf.GGUFWriter(path, arch)
    if name is not None:  # general.name: the model's own name, which import prefers to the file name
        w.add_name(name)
    w.add_file_type(file_type)
    w.add_context_length(context_length)
    w.add_embedding_length(n_embd)
    w.add_block_count(n_layers)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head_kv)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(head_dim)
    w.add_rope_freq_base(10000.0)
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_unk_token_id(0)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    if chat_template is not None:
        w.add_chat_template(chat_template)

    # numpy shape is (rows=out, cols=in); GGUF stores the reverse (ne0 = in).
    w.add_tensor("token_embd.weight", _rand(rng, (n_vocab, n_embd), mat))
    for i in range(n_layers):
        p = f"blk.{i}."
        w.add_tensor(p + "attn_norm.weight", np.ones(n_embd, dtype=np.float32))
        w.add_tensor(p + "attn_q.weight", _rand(rng, (n_q, n_embd), mat))
        w.add_tensor(p + "attn_k.weight", _rand(rng, (n_kv, n_embd), mat))
        w.add_tensor(p + "attn_v.weight", _rand(rng, (n_kv, n_embd), mat))
        w.add_tensor(p + "attn_output.weight", _rand(rng, (n_embd, n_q), mat))
        w.add_tensor(p + "ffn_norm.weight", np.ones(n_embd, dtype=np.float32))
        w.add_tensor(p + "ffn_gate.weight", _rand(rng, (n_ff, n_embd), mat))
        w.add_tensor(p + "ffn_up.weight", _rand(rng, (n_ff, n_embd), mat))
        w.add_tensor(p + "ffn_down.weight", _rand(rng, (n_embd, n_ff), mat))
    w.add_tensor("output_norm.weight", np.ones(n_embd, dtype=np.float32))
    w.add_tensor("output.weight", _rand(rng, (n_vocab, n_embd), mat))
    _finish(w)
    return path


def tiny_parameter_count(
    *, n_layers: int = 2, n_embd: int = 64, n_head: int = 4, n_head_kv: int = 2, n_ff: int = 128
) -> int:
    """The exact parameter count of :func:`write_tiny_gguf` with the same arguments."""
    n_vocab = len(tiny_vocab()[0])
    n_q, n_kv = n_embd // n_head * n_head, n_embd // n_head * n_head_kv
    per_layer = 2 * n_embd + 2 * n_q * n_embd + 2 * n_kv * n_embd + 3 * n_ff * n_embd
    return 2 * n_vocab * n_embd + n_embd + n_layers * per_layer


def _finish(w) -> None:
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def write_mmproj_gguf(path: Path | str, *, projection_dim: int = 64, n_embd: int = 32, seed: int = 1) -> Path:
    """Write a small CLIP-style multimodal projector (``general.architecture`` "clip"); returns ``path``.

    Its header is what detection reads; it holds only a few tensors, so llama.cpp's mtmd cannot run it.
    ``projection_dim`` is the projector's output width, which must equal the text model's ``n_embd``.
    """
    import gguf

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    patch, image = 14, 28
    w = gguf.GGUFWriter(path, "clip")
    w.add_name("tiny-mmproj")
    w.add_file_type(0)
    w.add_bool(gguf.Keys.Clip.HAS_VISION_ENCODER, True)
    w.add_string(gguf.Keys.Clip.PROJECTOR_TYPE, "mlp")
    w.add_uint32(gguf.Keys.ClipVision.IMAGE_SIZE, image)
    w.add_uint32(gguf.Keys.ClipVision.PATCH_SIZE, patch)
    w.add_uint32(gguf.Keys.ClipVision.EMBEDDING_LENGTH, n_embd)
    w.add_uint32(gguf.Keys.ClipVision.FEED_FORWARD_LENGTH, n_embd * 2)
    w.add_uint32(gguf.Keys.ClipVision.PROJECTION_DIM, projection_dim)
    w.add_uint32(gguf.Keys.ClipVision.BLOCK_COUNT, 1)
    w.add_uint32(gguf.Keys.ClipVision.Attention.HEAD_COUNT, 2)
    w.add_float32(gguf.Keys.ClipVision.Attention.LAYERNORM_EPS, 1e-6)
    w.add_array(gguf.Keys.ClipVision.IMAGE_MEAN, [0.5, 0.5, 0.5])
    w.add_array(gguf.Keys.ClipVision.IMAGE_STD, [0.5, 0.5, 0.5])
    w.add_tensor("v.patch_embd.weight", _rand(rng, (n_embd, 3, patch, patch), np.float32))
    w.add_tensor("v.blk.0.attn_q.weight", _rand(rng, (n_embd, n_embd), np.float32))
    w.add_tensor("mm.0.weight", _rand(rng, (projection_dim, n_embd), np.float32))
    w.add_tensor("mm.2.weight", _rand(rng, (projection_dim, projection_dim), np.float32))
    _finish(w)
    return path


def write_lora_gguf(
    path: Path | str,
    *,
    base_arch: str = "llama",
    n_layers: int = 2,
    n_embd: int = 64,
    n_head: int = 4,
    n_head_kv: int = 2,
    rank: int = 4,
    alpha: float = 8.0,
    seed: int = 2,
) -> Path:
    """Write a LoRA adapter GGUF as llama.cpp's ``convert_lora_to_gguf.py`` does; returns ``path``.

    Adapts ``attn_q`` and ``attn_v`` of every layer: ``lora_a`` has numpy shape (rank, n_in),
    ``lora_b`` (n_out, rank). With the defaults it fits :func:`write_tiny_gguf`'s defaults; a
    different ``n_embd`` makes a mismatched adapter.
    """
    import gguf

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n_kv = n_embd // n_head * n_head_kv
    w = gguf.GGUFWriter(path, base_arch)
    w.add_type(gguf.GGUFType.ADAPTER)
    w.add_string(gguf.Keys.Adapter.TYPE, "lora")
    w.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(alpha))
    w.add_name("tiny-lora")
    for i in range(n_layers):
        for target, n_out in (("attn_q", n_embd), ("attn_v", n_kv)):
            name = f"blk.{i}.{target}.weight"
            w.add_tensor(name + ".lora_a", _rand(rng, (rank, n_embd), np.float32))
            w.add_tensor(name + ".lora_b", _rand(rng, (n_out, rank), np.float32))
    _finish(w)
    return path


def write_split_gguf(directory: Path | str, stem: str = "tiny", *, parts: int = 2, **kwargs) -> list[Path]:
    """Write a tiny model as llama.cpp's gguf-split names it: ``{stem}-00001-of-0000N.gguf`` ...

    Part 1 carries the metadata and the first tensors; later parts carry ``split.*`` keys and the rest.
    Returns the part paths in order.
    """
    import gguf

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    whole = write_tiny_gguf(directory / f".{stem}-whole.gguf", **kwargs)
    reader = gguf.GGUFReader(whole)
    arch = str(bytes(reader.fields["general.architecture"].parts[-1]), "utf-8")
    names = [t.name for t in reader.tensors]
    chunks = [names[i::parts] for i in range(parts)]
    out = []
    for idx in range(parts):
        part = directory / f"{stem}-{idx + 1:05d}-of-{parts:05d}.gguf"
        w = gguf.GGUFWriter(part, arch)
        if idx == 0:
            for field in reader.fields.values():
                if field.name.startswith("GGUF.") or field.name == "general.architecture":
                    continue
                _copy_field(w, field)
        w.add_uint16(gguf.Keys.Split.LLM_KV_SPLIT_NO, idx)
        w.add_uint16(gguf.Keys.Split.LLM_KV_SPLIT_COUNT, parts)
        w.add_int32(gguf.Keys.Split.LLM_KV_SPLIT_TENSORS_COUNT, len(names))
        wanted = set(chunks[idx])
        for t in reader.tensors:
            if t.name in wanted:
                w.add_tensor(t.name, np.array(t.data), raw_dtype=t.tensor_type)
        _finish(w)
        out.append(part)
    del reader
    whole.unlink()
    return out


def _copy_field(w, field) -> None:
    import gguf

    vtype = field.types[0]
    if vtype == gguf.GGUFValueType.ARRAY:
        sub = field.types[-1]
        if sub == gguf.GGUFValueType.STRING:
            values = [str(bytes(field.parts[i]), "utf-8") for i in field.data]
        else:
            values = [field.parts[i].tolist()[0] for i in field.data]
        w.add_key_value(field.name, values, vtype, sub_type=sub)
    elif vtype == gguf.GGUFValueType.STRING:
        w.add_key_value(field.name, str(bytes(field.parts[-1]), "utf-8"), vtype)
    else:
        w.add_key_value(field.name, field.parts[-1].tolist()[0], vtype)


def make_sparse_copy(src: Path | str, dst: Path | str, size: int = 4 * 1024**3) -> Path:
    """Copy ``src`` to ``dst`` and extend it, sparsely, to ``size`` bytes (a huge file that costs no disk)."""
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    os.truncate(dst, size)
    return dst


def truncate_copy(src: Path | str, dst: Path | str, nbytes: int) -> Path:
    """Write the first ``nbytes`` of ``src`` to ``dst``."""
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    with open(src, "rb") as f:
        dst.write_bytes(f.read(nbytes))
    return dst


# --- hand-built (hostile) GGUF headers ---------------------------------------------------------------

_STRING, _ARRAY, _UINT32 = 8, 9, 4


def gguf_kv_string(key: str, value: str) -> bytes:
    """One GGUF key/value pair of string type, encoded."""
    k, v = key.encode(), value.encode()
    return struct.pack("<Q", len(k)) + k + struct.pack("<I", _STRING) + struct.pack("<Q", len(v)) + v


def write_gguf_bytes_with(
    path: Path | str,
    *,
    version: int = 3,
    tensor_count: int | None = None,
    kv_count: int | None = None,
    first_key_len: int | None = None,
    string_len: int | None = None,
    array_len: int | None = None,
    magic: bytes = b"GGUF",
) -> Path:
    """Write a small GGUF header by hand, lying about one length, to test a parser's bounds.

    The body is a well-formed ``general.architecture = "llama"`` pair followed by a short u32 array
    ``tokenizer.ggml.scores``; each argument replaces one declared number: ``tensor_count`` and
    ``kv_count`` in the file header, ``first_key_len`` the first key's length, ``string_len`` the
    architecture value's length, ``array_len`` the array's element count. The bytes after each lie
    are the honest short ones, so the file stays a few hundred bytes.
    """
    key = b"general.architecture"
    value = b"llama"
    body = struct.pack("<Q", first_key_len if first_key_len is not None else len(key)) + key
    body += struct.pack("<I", _STRING) + struct.pack("<Q", string_len if string_len is not None else len(value))
    body += value
    akey = b"tokenizer.ggml.scores"
    elems = [1, 2, 3, 4]
    body += struct.pack("<Q", len(akey)) + akey + struct.pack("<I", _ARRAY) + struct.pack("<I", _UINT32)
    body += struct.pack("<Q", array_len if array_len is not None else len(elems))
    body += struct.pack(f"<{len(elems)}I", *elems)
    head = magic + struct.pack("<I", version)
    head += struct.pack("<Q", tensor_count if tensor_count is not None else 0)
    head += struct.pack("<Q", kv_count if kv_count is not None else 2)
    path = Path(path)
    path.write_bytes(head + body)
    return path


try:  # helper B's safetensors / pickle / directory factories, once they exist
    from factories_weights import *  # noqa: F401,F403
except ImportError:
    pass
