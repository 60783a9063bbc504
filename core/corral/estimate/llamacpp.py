"""llama.cpp's memory model: KV cache, compute buffers and fixed costs for a transformer of a given shape.

The GGUF estimator (:mod:`corral.estimate.gguf`) fills a :class:`LlamaShape` from a file's header; the
catalog fills one from its data. Every formula follows what llama.cpp allocates (and, on the CPU, what a
load and one full prompt batch really make resident), checked against real loads in
``tests/test_estimate.py`` and ``benchmarks/estimate_accuracy.py``.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from attrs import field, frozen

from corral.errors import InvalidSetting

MiB = 1024**2

#: llama.cpp pads context sizes and KV views to this many cells.
KV_PAD = 256
#: ``n_batch`` / ``n_ubatch`` when the settings do not say (llama-cpp-python's defaults).
DEFAULT_BATCH = 512
#: The tokenizer and llama.cpp's own structures: a fixed part plus a part per vocabulary entry (token
#: texts, the text -> id map, the piece cache, and llama-cpp-python's per-token sampling arrays).
#: Measured: 2.9 MB for a 32-token vocabulary, 46.4 MB for Gemma 3's 262 144 tokens.
RUNTIME_FIXED = 3 * MiB
RUNTIME_PER_TOKEN = 166
#: What a CUDA (or other GPU) context, its kernels and library handles take on the device.
GPU_CONTEXT = 300 * MiB

#: ggml cache types: bytes per block and elements per block.
CACHE_TYPES: dict[str, tuple[int, int]] = {
    "f32": (4, 1), "f16": (2, 1), "bf16": (2, 1), "q8_0": (34, 32), "q4_0": (18, 32), "q4_1": (20, 32),
    "iq4_nl": (18, 32), "q5_0": (22, 32), "q5_1": (24, 32),
}  # fmt: skip
#: llama.cpp's ggml_type ids for the same cache types (llama-cpp-python passes ids).
CACHE_TYPE_IDS = {0: "f32", 1: "f16", 30: "bf16", 8: "q8_0", 2: "q4_0", 3: "q4_1", 20: "iq4_nl", 6: "q5_0", 7: "q5_1"}

#: Architectures whose sliding-window layers come in a fixed pattern: every N-th layer attends globally
#: (llama.cpp's ``set_swa_pattern(N)``). Other architectures' windows are ignored by llama.cpp too.
SWA_PATTERNS = {"gemma2": 2, "gemma3": 6, "gemma3n": 5, "cohere2": 4, "gpt-oss": 2, "exaone4": 4, "llama4": 4}


def pad(n: int, to: int) -> int:
    return -(-n // to) * to


@frozen
class LlamaShape:
    """The numbers llama.cpp's memory use depends on. Per-layer lists have one entry per layer."""

    n_layer: int
    n_embd: int
    n_head: int
    n_vocab: int
    n_ctx_train: int
    #: Key and value widths per layer (head size × KV heads); 0 for layers without a KV cache.
    n_embd_k: Sequence[int]
    n_embd_v: Sequence[int]
    n_ff: int = 0
    n_embd_q: int = 0
    #: Which layers use sliding-window attention, and the window.
    swa_layers: Sequence[bool] = field(factory=tuple)
    n_swa: int = 0
    #: Encoder-only models (BERT and kin) keep no KV cache.
    causal: bool = True


def cache_type_bytes(value: Any, what: str) -> tuple[int, int]:
    """(bytes per block, elements per block) of a KV cache type given as a name or a ggml type id."""
    name = CACHE_TYPE_IDS.get(value) if isinstance(value, int) else str(value or "f16").lower()
    if name not in CACHE_TYPES:
        known = ", ".join(CACHE_TYPES)
        raise InvalidSetting(f"KV cache type {what}={value!r} is not one llama.cpp accepts ({known})")
    return CACHE_TYPES[name]


def _setting(settings: Mapping[str, Any], *names: str, default: Any = None) -> Any:
    for name in names:
        if settings.get(name) is not None:
            return settings[name]
    return default


def _flag(value: Any) -> bool:
    """A boolean setting, also when it arrives as text ("false", "0")."""
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


@frozen
class LlamaRun:
    """The load settings that change memory use, resolved against the model's shape."""

    n_ctx: int
    n_ubatch: int
    type_k: tuple[int, int]
    type_v: tuple[int, int]
    flash_attn: bool
    swa_full: bool
    offload_kqv: bool
    #: Sequences with a KV cache of their own (llama-server's slots, the ``parallel`` setting); ``n_ctx``
    #: is the context of each.
    n_seq: int = 1

    @classmethod
    def from_settings(cls, shape: LlamaShape, settings: Mapping[str, Any]) -> "LlamaRun":
        n_ctx = int(settings.get("n_ctx") or 0) or shape.n_ctx_train or 4096
        n_batch = min(n_ctx, int(_setting(settings, "n_batch", default=DEFAULT_BATCH)))
        n_ubatch = min(n_batch, int(_setting(settings, "n_ubatch", default=DEFAULT_BATCH)))
        return cls(
            n_ctx=n_ctx,
            n_ubatch=max(1, n_ubatch),
            type_k=cache_type_bytes(_setting(settings, "type_k", "cache_type_k", default="f16"), "type_k"),
            type_v=cache_type_bytes(_setting(settings, "type_v", "cache_type_v", default="f16"), "type_v"),
            flash_attn=_flag(settings.get("flash_attn", False)),
            # llama.cpp's own default (and llama-cpp-python's): a full-size cache for windowed layers too.
            swa_full=_flag(_setting(settings, "swa_full", default=True)),
            offload_kqv=_flag(_setting(settings, "offload_kqv", default=True)),
            n_seq=max(1, int(_setting(settings, "parallel", default=1))),
        )


def cache_cells(shape: LlamaShape, run: LlamaRun, swa: bool) -> int:
    """Cells llama.cpp allocates for the full-attention cache, or for the sliding-window one.

    The windowed cache holds the window plus one micro-batch, padded, never more than the context;
    with ``swa_full`` it is as large as the context. With several sequences (slots), llama.cpp pads
    their total context and gives each sequence its share: these are the cells of one.
    """
    full = pad(run.n_ctx * run.n_seq, KV_PAD) // run.n_seq
    if not swa or run.swa_full or not shape.n_swa:
        return full
    return min(full, pad(shape.n_swa + run.n_ubatch, KV_PAD))


def layer_kv_bytes(shape: LlamaShape, run: LlamaRun, layer: int) -> int:
    """KV cache bytes of one layer: (key width × cells) and (value width × cells) in the cache types,
    for every sequence."""
    if not shape.causal:
        return 0
    swa = bool(shape.swa_layers) and shape.swa_layers[layer]
    cells = cache_cells(shape, run, swa)
    (kb, kn), (vb, vn) = run.type_k, run.type_v
    return run.n_seq * (shape.n_embd_k[layer] * cells // kn * kb + shape.n_embd_v[layer] * cells // vn * vb)


def kv_bytes(shape: LlamaShape, run: LlamaRun, layers: Sequence[int] | None = None) -> int:
    """KV cache bytes of the given layers (default: all)."""
    return sum(layer_kv_bytes(shape, run, i) for i in (range(shape.n_layer) if layers is None else layers))


def _attention_view(shape: LlamaShape, run: LlamaRun, tokens: int) -> int:
    return min(pad(run.n_ctx, KV_PAD), pad(tokens, KV_PAD))


def compute_bytes(shape: LlamaShape, run: LlamaRun, *, device: str) -> int:
    """The compute buffers of one micro-batch.

    ``device="cpu"``: what a full prompt batch makes resident. llama.cpp reserves a worst-case buffer
    (logits for every token of the batch), but on the CPU untouched pages cost nothing; the batch
    touches its attention scores over the cells it fills, the feed-forward activations (the two phases
    reuse the same memory), one row of logits, and a mask per cache (the windowed cache is masked over
    all its cells).

    ``device="gpu"``: the reserved worst case, which a GPU allocates up front: attention over the whole
    context or logits for the whole batch, whichever is larger.
    """
    t = run.n_ubatch
    n_q = shape.n_embd_q or shape.n_embd
    n_kv = max(shape.n_embd_k or [0])
    resid = 4 * t * 2 * shape.n_embd
    ffn = 4 * t * 3 * shape.n_ff
    caches = [False] + ([True] if any(shape.swa_layers) else [])
    if device == "cpu":
        view = _attention_view(shape, run, t)
        scores = 0 if run.flash_attn else 2 * shape.n_head * view
        attn = 4 * t * (scores + n_q + 2 * n_kv)
        masks = sum(4 * t * (cache_cells(shape, run, True) if swa else view) for swa in caches)
        return max(attn, ffn) + resid + masks + 4 * shape.n_vocab
    cells = pad(run.n_ctx, KV_PAD)
    scores = 0 if run.flash_attn else shape.n_head * cells
    attn = 4 * t * (scores + n_q + 2 * n_kv)
    logits = 4 * t * shape.n_vocab
    masks = sum(4 * t * cache_cells(shape, run, swa) for swa in caches)
    return max(attn, ffn, logits) + resid + masks


def runtime_bytes(shape: LlamaShape) -> int:
    """The tokenizer and llama.cpp's fixed structures, plus the output buffer (one row of logits)."""
    return RUNTIME_FIXED + RUNTIME_PER_TOKEN * shape.n_vocab + 4 * shape.n_vocab


def gpu_layers(n_layer: int, n_gpu_layers: int) -> tuple[set[int], bool]:
    """(layers on the GPU, whether the output layer is) for llama.cpp's ``n_gpu_layers``.

    llama.cpp offloads the last ``n_gpu_layers`` repeating layers, and the output layer once the count
    exceeds the number of layers; -1 means everything.
    """
    if n_gpu_layers < 0:
        n_gpu_layers = n_layer + 1
    start = max(n_layer - n_gpu_layers, 0)
    return set(range(start, n_layer)), n_gpu_layers > n_layer


def swa_layers_for(arch: str | None, n_layer: int, pattern: Any) -> tuple[bool, ...]:
    """Which layers are sliding-window ones, from the header's pattern or the architecture's rule.

    ``pattern`` may be a per-layer list of flags, or a number N meaning every N-th layer is global.
    """
    if isinstance(pattern, (tuple, list)) and len(pattern) == n_layer:
        return tuple(bool(p) for p in pattern)
    every = pattern if isinstance(pattern, int) and not isinstance(pattern, bool) and pattern > 0 else None
    every = every or SWA_PATTERNS.get(arch or "")
    if not every:
        return ()
    return tuple(i % every < every - 1 for i in range(n_layer))
