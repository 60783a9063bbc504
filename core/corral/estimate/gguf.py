"""Memory estimate of a GGUF model as llama.cpp loads it, from the real header (tensor sizes and hparams).

Weights are placed layer by layer (``n_gpu_layers`` offloads the last layers, then the output layer);
the KV cache follows its layer; the tokenizer and runtime stay in system memory. On the CPU, llama.cpp
repacks some quantized matrices into an interleaved copy while the mapped original stays resident, so
those are counted twice.
"""

from __future__ import annotations

import platform
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

from corral.detect.gguf import ENCODER_ARCHS, GGUFArray, GGUFHeader, first_int, read_gguf_header
from corral.errors import NotFound
from corral.estimate import llamacpp as lc
from corral.estimate.parts import Split
from corral.records import ComponentKind, MemoryEstimate, Model

_LAYER = re.compile(r"^(?:blk|enc\.blk|dec\.blk)\.(\d+)\.")
#: ggml types the CPU backend repacks (Q4_0, Q4_K, IQ4_NL) into interleaved copies for faster matmuls.
_REPACKED = frozenset({2, 12, 20})


def _per_layer(value: Any, n_layer: int, default: int) -> list[int]:
    """An hparam that may be one number or one number per layer (some models vary KV heads by layer)."""
    if isinstance(value, tuple) and len(value) == n_layer and all(isinstance(v, int) for v in value):
        return list(value)
    single = first_int(value)
    return [default if single is None else single] * n_layer


def shape_from_header(header: GGUFHeader) -> lc.LlamaShape:
    """The :class:`LlamaShape` a GGUF header describes."""
    av, meta = header.arch_value, header.metadata
    n_layer = first_int(av("block_count")) or 0
    n_embd = first_int(av("embedding_length")) or 0
    n_head = first_int(av("attention.head_count")) or 1
    heads_kv = _per_layer(av("attention.head_count_kv"), n_layer, n_head)
    head_k = first_int(av("attention.key_length")) or (n_embd // n_head if n_head else 0)
    head_v = first_int(av("attention.value_length")) or head_k
    n_embd_k = [head_k * h for h in heads_kv]
    n_embd_v = [head_v * h for h in heads_kv]
    mla = first_int(av("attention.kv_lora_rank"))
    if mla:  # multi-head latent attention caches the compressed latent plus the rotary part
        rope = first_int(av("rope.dimension_count")) or 0
        n_embd_k, n_embd_v = [mla + rope] * n_layer, [mla] * n_layer
    tokens = meta.get("tokenizer.ggml.tokens")
    n_vocab = len(tokens) if isinstance(tokens, (GGUFArray, tuple)) else first_int(av("vocab_size")) or 0
    n_ff = first_int(av("feed_forward_length")) or 0
    experts_used = first_int(av("expert_used_count"))
    if experts_used and first_int(av("expert_feed_forward_length")):
        n_ff = max(n_ff, experts_used * first_int(av("expert_feed_forward_length")))
    window = first_int(av("attention.sliding_window")) or 0
    swa = lc.swa_layers_for(header.architecture, n_layer, av("attention.sliding_window_pattern")) if window else ()
    causal = header.architecture not in ENCODER_ARCHS and av("attention.causal") is not False
    return lc.LlamaShape(
        n_layer=n_layer,
        n_embd=n_embd,
        n_head=n_head,
        n_vocab=n_vocab,
        n_ctx_train=first_int(av("context_length")) or 0,
        n_embd_k=n_embd_k,
        n_embd_v=n_embd_v,
        n_ff=n_ff,
        n_embd_q=head_k * n_head,
        swa_layers=swa,
        n_swa=window if swa else 0,
        causal=causal,
    )


def _headers(paths: Sequence[Path], what: str) -> list[GGUFHeader]:
    for p in paths:
        if not Path(p).is_file():
            raise NotFound(f"{p}: the {what} file is missing; if it moved: corral edit MODEL --path NEW_PATH, else re-import it")
    return [read_gguf_header(p) for p in paths]


def _layer_of(name: str) -> int | None:
    m = _LAYER.match(name)
    return int(m.group(1)) if m else None


def _weights(split: Split, headers: Sequence[GGUFHeader], gpu: set[int], output_gpu: bool, n_layer: int) -> None:
    repack = platform.machine().lower() in ("x86_64", "amd64", "aarch64", "arm64")
    names = {t.name for h in headers for t in h.tensors}
    for header in headers:
        for t in header.tensors:
            nbytes = t.nbytes or 0
            layer = _layer_of(t.name)
            if layer is not None and layer < n_layer:
                on_gpu = layer in gpu
            elif t.name.startswith(("output", "cls", "enc.output", "dec.output")):
                on_gpu = output_gpu
            else:
                on_gpu = False  # token embeddings and other inputs stay on the CPU
            split.add("weights", nbytes, on_gpu)
            if (not on_gpu and repack and t.type in _REPACKED and len(t.shape) == 2 and t.shape[1] % 8 == 0
                    and not t.name.startswith("token_embd")):
                split.add("weights", nbytes, False)
            if t.name == "token_embd.weight" and output_gpu and "output.weight" not in names:
                split.add("weights", nbytes, True)  # tied embeddings: the output layer gets its own copy


def _mmproj(split: Split, path: Path, on_gpu: bool) -> None:
    """A multimodal projector: its weights plus the vision encoder's compute for one image."""
    (header,) = _headers([path], "mmproj")
    split.add("mmproj", sum(t.nbytes or 0 for t in header.tensors), on_gpu)
    meta = header.metadata
    image, patch = first_int(meta.get("clip.vision.image_size")), first_int(meta.get("clip.vision.patch_size"))
    if image and patch:
        patches = (image // patch) ** 2
        hidden = first_int(meta.get("clip.vision.embedding_length")) or 0
        ffn = first_int(meta.get("clip.vision.feed_forward_length")) or 4 * hidden
        heads = first_int(meta.get("clip.vision.attention.head_count")) or 1
        split.add("mmproj", 4 * (patches * (3 * hidden + ffn) + heads * patches * patches), on_gpu)


def _draft(split: Split, path: Path, settings: Mapping[str, Any], on_gpu: bool) -> None:
    """A draft model for speculative decoding: its weights, and a KV cache of the same context and slots
    as the base's (llama.cpp gives it the same n_ctx and offloads it as the base)."""
    (header,) = _headers([path], "draft")
    shape = shape_from_header(header)
    run = lc.LlamaRun.from_settings(shape, settings)
    split.add("weights", sum(t.nbytes or 0 for t in header.tensors), on_gpu)
    for layer in range(shape.n_layer):
        split.add("kv_cache", lc.layer_kv_bytes(shape, run, layer), on_gpu and run.offload_kqv)


def _lora(split: Split, path: Path, gpu: set[int], output_gpu: bool, n_layer: int) -> None:
    (header,) = _headers([path], "LoRA")
    for t in header.tensors:
        layer = _layer_of(t.name)
        on_gpu = layer in gpu if layer is not None and layer < n_layer else output_gpu
        split.add("lora", t.nbytes or 0, on_gpu)


def estimate_gguf(
    model: Model, settings: Mapping[str, Any], loras: Sequence[Path] = ()
) -> MemoryEstimate:
    """What llama.cpp takes to load ``model`` (a GGUF, maybe split) with ``settings``, in bytes."""
    paths = tuple(model.paths) or (model.path,)
    headers = _headers([p for p in paths if str(p).lower().endswith(".gguf")] or [model.path], "model")
    shape = shape_from_header(headers[0])
    run = lc.LlamaRun.from_settings(shape, settings)
    notes: list[str] = []
    if not int(settings.get("n_ctx") or 0):
        notes.append(f"n_ctx 0: the model's own context length, {run.n_ctx} tokens")
    n_gpu_layers = int(settings.get("n_gpu_layers") or 0)
    gpu, output_gpu = lc.gpu_layers(shape.n_layer, n_gpu_layers)
    any_gpu = bool(gpu) or output_gpu

    split = Split()
    _weights(split, headers, gpu, output_gpu, shape.n_layer)
    unknown = sum(1 for h in headers for t in h.tensors if t.nbytes is None)
    if unknown:
        notes.append(f"{unknown} tensor(s) of a ggml type Corral does not know are not counted")
    for layer in range(shape.n_layer):
        split.add("kv_cache", lc.layer_kv_bytes(shape, run, layer), layer in gpu and run.offload_kqv)
    if run.n_seq > 1:
        notes.append(f"parallel {run.n_seq}: a KV cache of {run.n_ctx} tokens for each of {run.n_seq} slots")
    if shape.swa_layers and run.swa_full:
        notes.append("sliding-window layers keep a full-size cache (swa_full, llama.cpp's default)")
    elif shape.swa_layers:
        notes.append(f"sliding-window layers cache {lc.cache_cells(shape, run, True)} cells (window {shape.n_swa})")
    if len(gpu) == shape.n_layer and output_gpu:
        split.add("compute", 4 * run.n_ubatch * 2 * shape.n_embd + 4 * shape.n_vocab, False)
    else:
        split.add("compute", lc.compute_bytes(shape, run, device="cpu"), False)
    if any_gpu:
        split.add("compute", lc.compute_bytes(shape, run, device="gpu"), True)
        split.add("overhead", lc.GPU_CONTEXT, True)
        notes.append(f"GPU memory includes about {lc.GPU_CONTEXT // lc.MiB} MiB for the GPU context")
    split.add("overhead", lc.runtime_bytes(shape), False)

    mmproj = model.component(ComponentKind.MMPROJ)
    if mmproj is not None:
        _mmproj(split, Path(mmproj.path), any_gpu)
    draft = model.component(ComponentKind.DRAFT)
    if draft is not None:
        _draft(split, Path(draft.path), settings, any_gpu)
        notes.append(f"draft model {Path(draft.path).name}: its weights and KV cache (speculative decoding)")
    for path in loras:
        _lora(split, Path(path), gpu, output_gpu, shape.n_layer)
    return split.finish(run.n_ctx, notes)

