"""The shape of a fresh Llama-style causal LM: presets, limits, validation, the exact parameter count and
the memory estimates that ``corral create`` previews.

Pure Python on purpose: ``corral create --dry-run`` answers without importing torch or transformers.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import attrs

from corral.api import InsufficientMemory, InvalidSetting

#: The architecture every preset builds (transformers' ``LlamaForCausalLM``).
ARCHITECTURE = "LlamaForCausalLM"

#: Accepted ranges, inclusive: option name -> (minimum, maximum).
LIMITS: Mapping[str, tuple[int, int]] = {
    "vocab_size": (10_000, 100_000),
    "hidden_size": (128, 8192),
    "layers": (1, 256),
    "heads": (1, 256),
    "kv_heads": (1, 256),
    "ffn_size": (128, 65_536),
    "context_length": (128, 131_072),
}

#: How each field is spelled on the command line (for error messages).
FLAGS: Mapping[str, str] = {
    "vocab_size": "--vocab-size",
    "hidden_size": "--hidden-size",
    "layers": "--layers",
    "heads": "--heads",
    "kv_heads": "--kv-heads",
    "ffn_size": "--ffn-size",
    "context_length": "--context-length",
    "tie_embeddings": "--tie-embeddings",
}

#: Bytes per parameter while training with Adam in mixed precision: fp32 weights (4) + fp32 gradients (4)
#: + Adam's two fp32 moments (8). Activations come on top and depend on batch size and sequence length.
TRAINING_BYTES_PER_PARAMETER = 16

BYTES_PER_PARAMETER = {"float32": 4, "bfloat16": 2}

#: What torch and transformers themselves take in the writing process (measured: about 0.9 GB).
RUNTIME_BYTES = 1_000_000_000


@attrs.frozen
class ModelSpec:
    """Every number that fixes a Llama-style model's shape."""

    vocab_size: int
    hidden_size: int
    layers: int
    heads: int
    kv_heads: int
    ffn_size: int
    context_length: int
    tie_embeddings: bool

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.heads

    @property
    def parameters(self) -> int:
        """The exact parameter count of the ``LlamaForCausalLM`` this spec builds (no biases)."""
        h, v = self.hidden_size, self.vocab_size
        kv_dim = self.kv_heads * self.head_dim
        attention = h * h + 2 * h * kv_dim + h * h  # q, k, v, o projections
        mlp = 3 * h * self.ffn_size  # gate, up, down
        norms = 2 * h  # input and post-attention RMSNorm
        embeddings = v * h
        lm_head = 0 if self.tie_embeddings else v * h
        return embeddings + self.layers * (attention + mlp + norms) + h + lm_head

    @property
    def largest_tensor(self) -> int:
        """Elements in the biggest single tensor (the embedding matrix, or an MLP projection)."""
        return max(self.vocab_size * self.hidden_size, self.ffn_size * self.hidden_size)


#: Preset name -> (the spec's fields, one line shown by ``--help`` and the docs).
PRESETS: Mapping[str, dict[str, Any]] = {
    # 100,092,672 parameters: GPT-2-small width, grouped-query attention, tied embeddings.
    "small": dict(vocab_size=32_000, hidden_size=768, layers=12, heads=12, kv_heads=4, ffn_size=2048,
                  context_length=2048, tie_embeddings=True),
    # 502,193,664 parameters.
    "medium": dict(vocab_size=32_000, hidden_size=1536, layers=18, heads=12, kv_heads=4, ffn_size=4096,
                   context_length=2048, tie_embeddings=True),
    # 1,100,048,384 parameters: the TinyLlama 1.1B shape.
    "large": dict(vocab_size=32_000, hidden_size=2048, layers=22, heads=32, kv_heads=4, ffn_size=5632,
                  context_length=2048, tie_embeddings=False),
}
PRESET_NAMES = (*PRESETS, "free")

#: Defaults of the free preset for everything but --hidden-size and --layers.
FREE_DEFAULTS = dict(vocab_size=32_000, context_length=2048, tie_embeddings=True)


def llama_ffn_size(hidden_size: int) -> int:
    """Llama's rule for the MLP width: 8/3 of the hidden size, rounded up to a multiple of 256."""
    return 256 * math.ceil(8 * hidden_size / 3 / 256)


def resolve(preset: str, overrides: Mapping[str, Any]) -> ModelSpec:
    """The spec for ``preset`` with the options the user gave (``None`` values mean "not given").

    The free preset needs ``hidden_size`` and ``layers``; it defaults heads to hidden/64 (64-wide heads),
    KV heads to the heads, and the MLP width to Llama's 8/3 rule.
    """
    given = {k: v for k, v in overrides.items() if v is not None}
    if preset in PRESETS:
        return ModelSpec(**{**PRESETS[preset], **given})
    if preset != "free":
        raise InvalidSetting(f"unknown preset {preset!r}; choose one of {', '.join(PRESET_NAMES)}")
    missing = [FLAGS[k] for k in ("hidden_size", "layers") if k not in given]
    if missing:
        raise InvalidSetting(f"the free preset needs {' and '.join(missing)} (or pick --preset small, medium or large)")
    values = {**FREE_DEFAULTS, **given}
    hidden = values["hidden_size"]
    if "heads" not in values:
        if hidden % 64:
            raise InvalidSetting(f"the free preset needs --heads when --hidden-size ({hidden}) is not a multiple of 64")
        values["heads"] = hidden // 64
    values.setdefault("kv_heads", values["heads"])
    values.setdefault("ffn_size", llama_ffn_size(hidden))
    return ModelSpec(**values)


def validate(spec: ModelSpec) -> ModelSpec:
    """Refuse a spec transformers could not build or that is outside the supported ranges."""
    for name, (low, high) in LIMITS.items():
        value = getattr(spec, name)
        if not low <= value <= high:
            label = name.replace("_", " ").replace("kv ", "KV ").replace("ffn", "FFN")
            raise InvalidSetting(f"{label} {value:,} is outside {low:,}–{high:,} ({FLAGS[name]})")
    if spec.hidden_size % spec.heads:
        raise InvalidSetting(
            f"hidden size {spec.hidden_size} is not divisible by {spec.heads} attention heads; "
            f"choose --heads that divides it (e.g. {_divisor_near(spec.hidden_size, spec.heads)})"
        )
    if spec.heads % spec.kv_heads:
        raise InvalidSetting(
            f"{spec.heads} attention heads are not divisible by {spec.kv_heads} KV heads; "
            f"choose --kv-heads that divides it (e.g. {_divisor_near(spec.heads, spec.kv_heads)})"
        )
    if spec.head_dim % 2:
        # Rotary position embeddings rotate pairs of channels.
        raise InvalidSetting(
            f"head size {spec.head_dim} (hidden size {spec.hidden_size} / {spec.heads} heads) must be even "
            "for rotary position embeddings; change --heads or --hidden-size"
        )
    return spec


def _divisor_near(n: int, wanted: int) -> int:
    divisors = [d for d in range(1, min(n, 256) + 1) if n % d == 0]
    return min(divisors, key=lambda d: (abs(d - wanted), -d))


def build_bytes(spec: ModelSpec) -> int:
    """Memory that writing the model takes here: the model in fp32, one tensor's bf16 copy while it is
    written, and the libraries themselves."""
    return 4 * spec.parameters + 2 * spec.largest_tensor + RUNTIME_BYTES


def check_memory(spec: ModelSpec, available: int) -> None:
    """Refuse a model whose build would not fit in ``available`` bytes of memory."""
    need = build_bytes(spec)
    if need > available:
        raise InsufficientMemory(
            f"building this {spec.parameters:,}-parameter model needs about {_size(need)} of memory, "
            f"but {_size(available)} is available; choose a smaller preset, fewer --layers or a smaller --hidden-size"
        )


def preview(spec: ModelSpec, *, dtype: str = "float32", available: int | None = None) -> dict[str, Any]:
    """What ``corral create`` shows before it writes anything (also its ``--json`` document)."""
    params = spec.parameters
    need = build_bytes(spec)
    return {
        "architecture": ARCHITECTURE,
        **attrs.asdict(spec),
        "head_dim": spec.head_dim,
        "parameters": params,
        "memory": {
            "weights_fp32": 4 * params,
            "weights_bf16": 2 * params,
            "training": TRAINING_BYTES_PER_PARAMETER * params,
            "build": need,
            "available": available,
            "fits": None if available is None else need <= available,
        },
        "dtype": dtype,
        "file_size": BYTES_PER_PARAMETER[dtype] * params,
    }


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if value < 1000 or unit == "PB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{n} B"
