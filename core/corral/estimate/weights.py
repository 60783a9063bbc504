"""Memory estimate of models loaded through torch (safetensors, HF folders, diffusers pipelines, Kokoro,
pickles, ONNX): tensor sizes × dtype, plus the KV cache of causal LMs, activations and the runtime.

safetensors headers give every tensor's shape and dtype; a ``dtype`` setting converts the floating-point
tensors (integer and quantized ones keep their size), and a ``quantization`` setting (bitsandbytes int8,
int4, nf4) shrinks the matrices it quantizes. Pickled and ONNX weights count by file size.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from corral.errors import NotFound
from corral.estimate.parts import Split
from corral.records import Category, MemoryEstimate, Model

MiB = 1024**2
#: torch's allocator, kernels and the tokenizer, once per loaded model.
TORCH_RUNTIME = 160 * MiB
#: What a CUDA context takes on the device.
GPU_CONTEXT = 300 * MiB
#: Context assumed for a causal LM's KV cache when no ``n_ctx`` is set (transformers grows its cache as
#: a conversation grows; this is a working size, not the model's maximum).
DEFAULT_CTX = 4096
#: Tokens in one embedding/rerank batch (32 texts of 256 tokens).
ENCODER_BATCH_TOKENS = 32 * 256

DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8, "fp32": 4, "fp16": 2, "bf16": 2}
_FLOAT_CODES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2}
#: Bytes per value of a matrix bitsandbytes quantizes: int8 keeps one byte (plus per-row scales); 4-bit
#: packs two values a byte plus a float32 scale per block of 64.
QUANT_BYTES = {"int8": 1.0, "int4": 0.5 + 4 / 64, "nf4": 0.5 + 4 / 64}
#: Matrices transformers leaves unquantized: the embeddings and the output head.
_KEPT = ("embed", "lm_head", "wte", "wpe", "shared")


def _dtype_override(settings: Mapping[str, Any]) -> int | None:
    dtype = settings.get("dtype")
    return DTYPE_BYTES.get(str(dtype)) if dtype and dtype != "auto" else None


def _quant_bytes(settings: Mapping[str, Any]) -> float | None:
    return QUANT_BYTES.get(str(settings.get("quantization") or "none"))


def _safetensors_bytes(path: Path, override: int | None, quant: float | None = None) -> int:
    from corral.detect.safetensors import read_header
    from corral.detect.tensors import DTYPE_BITS

    total = 0
    for name, t in read_header(path).tensors.items():
        n = math.prod(t.shape)
        if quant and t.dtype in _FLOAT_CODES and len(t.shape) == 2 and not any(k in name for k in _KEPT):
            total += math.ceil(n * quant)
        elif override and t.dtype in _FLOAT_CODES:
            total += n * override
        else:
            total += (n * DTYPE_BITS[t.dtype] + 7) // 8
    return total


def _file_bytes(path: Path, override: int | None, stored: str | None) -> int:
    size = path.stat().st_size
    if override and stored in DTYPE_BYTES:
        return size * override // DTYPE_BYTES[stored]
    return size


def weight_files(paths: Iterable[Path]) -> list[Path]:
    """The files among ``paths`` that hold weights (configs and tokenizers are left out)."""
    suffixes = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".onnx")
    return [Path(p) for p in paths if str(p).lower().endswith(suffixes)]


def weights_bytes(paths: Sequence[Path], settings: Mapping[str, Any], stored_dtype: str | None) -> int:
    """Bytes of the weights in ``paths`` once loaded (``dtype`` and ``quantization`` settings applied)."""
    override = _dtype_override(settings)
    total = 0
    for path in weight_files(paths):
        if not path.is_file():
            raise NotFound(f"{path}: a weight file of the model is missing; if it moved: corral edit MODEL --path NEW_PATH, "
                           f"else re-import it")
        if path.suffix.lower() == ".safetensors":
            total += _safetensors_bytes(path, override, _quant_bytes(settings))
        else:
            total += _file_bytes(path, override, stored_dtype)
    return total


def estimate_torch(
    weights: int,
    category: Category,
    settings: Mapping[str, Any],
    *,
    hidden: int = 0,
    layers: int = 0,
    heads: int = 0,
    kv_heads: int | None = None,
    head_dim: int | None = None,
    vocab: int = 0,
    context_length: int | None = None,
    stored_dtype: str | None = None,
    lora_bytes: int = 0,
) -> MemoryEstimate:
    """The estimate for ``weights`` bytes of a torch model of ``category`` and the given shape.

    Causal LMs add a KV cache for ``n_ctx`` tokens (default: the model's context, at most
    :data:`DEFAULT_CTX`) and one prompt's activations; encoders add one batch's activations; image
    pipelines add a rough allowance. Everything goes to the GPU when ``device`` is ``cuda``.
    """
    device = str(settings.get("device") or "cpu")
    on_gpu = device.startswith("cuda")
    per_value = _dtype_override(settings) or DTYPE_BYTES.get(stored_dtype or "", 2)
    notes: list[str] = []
    split = Split()
    split.add("weights", weights, on_gpu)
    n_ctx = None
    if category in (Category.TEXT_GENERATION, Category.CHAT, Category.MULTIMODAL):
        n_ctx = int(settings.get("n_ctx") or 0) or min(context_length or DEFAULT_CTX, DEFAULT_CTX)
        if not settings.get("n_ctx"):
            notes.append(f"KV cache counted for {n_ctx} tokens (the cache grows with the conversation)")
        if layers and heads and hidden:
            width = (kv_heads or heads) * (head_dim or hidden // heads)
            split.add("kv_cache", 2 * layers * width * n_ctx * per_value, on_gpu)
        split.add("compute", 4 * 512 * hidden * 4 + 4 * 2 * vocab, on_gpu)
    elif category in (Category.EMBEDDING, Category.RERANK):
        split.add("compute", 4 * ENCODER_BATCH_TOKENS * hidden * 4, on_gpu)
    elif category == Category.IMAGE:
        split.add("compute", max(512 * MiB, weights // 4), on_gpu)
        notes.append("image activations are a rough allowance (a quarter of the weights, at least 512 MiB)")
    else:
        split.add("compute", 64 * MiB, on_gpu)
    split.add("lora", lora_bytes, on_gpu)
    split.add("overhead", TORCH_RUNTIME, False)
    if on_gpu:
        split.add("overhead", GPU_CONTEXT, True)
        notes.append(f"GPU memory includes about {GPU_CONTEXT // MiB} MiB for the CUDA context")
    if device == "mps":
        notes.append("Apple GPUs share system memory: everything counts as RAM")
    return split.finish(n_ctx, notes)


def estimate_weights(model: Model, settings: Mapping[str, Any], loras: Sequence[Path] = ()) -> MemoryEstimate:
    """What loading ``model`` through torch takes with ``settings`` (``dtype``, ``quantization``, ``device``,
    ``n_ctx``)."""
    stored = model.facts.dtype
    paths = list(model.paths) or [model.path]
    paths += [c.path for c in model.components]
    weights = weights_bytes(paths, settings, stored)
    if not weight_files(paths) and model.path.is_file():
        weights = model.path.stat().st_size
    lora_bytes = 0
    for path in map(Path, loras):
        files = sorted(path.iterdir()) if path.is_dir() else [path]
        lora_bytes += weights_bytes(files, {**settings, "quantization": None}, stored)  # adapters stay as they are
    f = model.facts
    head_dim = f.extra.get("head_dim")
    return estimate_torch(
        weights, model.category, settings,
        hidden=f.hidden_size or 0, layers=f.layers or 0, heads=f.heads or 0, kv_heads=f.kv_heads,
        head_dim=head_dim if isinstance(head_dim, int) else None, vocab=f.vocab_size or 0,
        context_length=f.context_length, stored_dtype=stored, lora_bytes=lora_bytes,
    )  # fmt: skip
