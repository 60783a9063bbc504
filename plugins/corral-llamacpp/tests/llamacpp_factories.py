"""Test files for the llama.cpp plugin: a complete tiny LLaVA-style projector that libmtmd really runs,
and small images, written with numpy, gguf and zlib only.

``factories.write_mmproj_gguf`` writes only the header detection reads (libmtmd refuses it); the projector
here carries every tensor of a one-layer CLIP vision tower and a two-layer MLP projector, so an image goes
through the real encode path and becomes ``(image_size // patch_size) ** 2`` embeddings in the text model.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

#: Small and fast: the real model with a short context. One thread: on a small shared machine, llama.cpp's
#: threads wait on each other whenever another process takes a core, and two run slower than one.
GEMMA_SETTINGS = {"n_ctx": 1024, "threads": 1, "threads_batch": 1}


def _rand(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return (rng.standard_normal(shape) * 0.02).astype(np.float32)


def write_llava_mmproj(
    path: Path | str,
    *,
    projection_dim: int = 64,
    n_embd: int = 32,
    n_ff: int = 64,
    image_size: int = 28,
    patch_size: int = 14,
    layers: int = 1,
    heads: int = 2,
    seed: int = 3,
) -> Path:
    """A runnable CLIP + MLP (``projector_type`` mlp) mmproj; ``projection_dim`` must be the text model's width."""
    import gguf

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    zeros = lambda n: np.zeros(n, dtype=np.float32)  # noqa: E731
    ones = lambda n: np.ones(n, dtype=np.float32)  # noqa: E731
    w = gguf.GGUFWriter(path, "clip")
    w.add_name("tiny-llava-mmproj")
    w.add_file_type(0)
    w.add_bool("clip.has_text_encoder", False)
    w.add_bool("clip.has_vision_encoder", True)
    w.add_bool("clip.has_llava_projector", True)
    w.add_string("clip.projector_type", "mlp")
    w.add_bool("clip.use_gelu", True)
    w.add_uint32("clip.vision.image_size", image_size)
    w.add_uint32("clip.vision.patch_size", patch_size)
    w.add_uint32("clip.vision.embedding_length", n_embd)
    w.add_uint32("clip.vision.feed_forward_length", n_ff)
    w.add_uint32("clip.vision.projection_dim", projection_dim)
    w.add_uint32("clip.vision.block_count", layers)
    w.add_uint32("clip.vision.attention.head_count", heads)
    w.add_float32("clip.vision.attention.layer_norm_epsilon", 1e-5)
    w.add_array("clip.vision.image_mean", [0.5, 0.5, 0.5])
    w.add_array("clip.vision.image_std", [0.5, 0.5, 0.5])
    positions = (image_size // patch_size) ** 2 + 1  # patches + the class embedding
    w.add_tensor("v.class_embd", _rand(rng, (n_embd,)))
    w.add_tensor("v.patch_embd.weight", _rand(rng, (n_embd, 3, patch_size, patch_size)))
    w.add_tensor("v.position_embd.weight", _rand(rng, (positions, n_embd)))
    w.add_tensor("v.pre_ln.weight", ones(n_embd))
    w.add_tensor("v.pre_ln.bias", zeros(n_embd))
    for i in range(layers):
        p = f"v.blk.{i}."
        for name in ("attn_q", "attn_k", "attn_v", "attn_out"):
            w.add_tensor(p + name + ".weight", _rand(rng, (n_embd, n_embd)))
            w.add_tensor(p + name + ".bias", zeros(n_embd))
        for name in ("ln1", "ln2"):
            w.add_tensor(p + name + ".weight", ones(n_embd))
            w.add_tensor(p + name + ".bias", zeros(n_embd))
        w.add_tensor(p + "ffn_up.weight", _rand(rng, (n_ff, n_embd)))
        w.add_tensor(p + "ffn_up.bias", zeros(n_ff))
        w.add_tensor(p + "ffn_down.weight", _rand(rng, (n_embd, n_ff)))
        w.add_tensor(p + "ffn_down.bias", zeros(n_embd))
    w.add_tensor("mm.0.weight", _rand(rng, (projection_dim, n_embd)))
    w.add_tensor("mm.0.bias", zeros(projection_dim))
    w.add_tensor("mm.2.weight", _rand(rng, (projection_dim, projection_dim)))
    w.add_tensor("mm.2.bias", zeros(projection_dim))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def png_bytes(width: int = 16, height: int = 16, seed: int = 0) -> bytes:
    """A valid RGB PNG of random pixels."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    raw = b"".join(b"\x00" + pixels[y].tobytes() for y in range(height))  # filter type 0 per row

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def rewrite_gguf(
    src: Path | str, dst: Path | str, *, drop_tensor: str | None = None, set_uint32: dict[str, int] | None = None
) -> Path:
    """Copy a GGUF, leaving out the tensor ``drop_tensor`` and giving the keys in ``set_uint32`` new values:
    well-formed files (Corral's header parser reads them) whose content llama.cpp must refuse."""
    import gguf

    from factories import _copy_field  # the shared factories' metadata copier

    changed = dict(set_uint32 or {})
    reader = gguf.GGUFReader(src)
    arch = str(bytes(reader.fields["general.architecture"].parts[-1]), "utf-8")
    w = gguf.GGUFWriter(dst, arch)
    for field in reader.fields.values():
        if field.name.startswith("GGUF.") or field.name == "general.architecture":
            continue
        if field.name in changed:
            w.add_uint32(field.name, changed.pop(field.name))
        else:
            _copy_field(w, field)
    for key, value in changed.items():
        w.add_uint32(key, value)
    for t in reader.tensors:
        if t.name != drop_tensor:
            w.add_tensor(t.name, np.array(t.data), raw_dtype=t.tensor_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    del reader
    return Path(dst)
