"""The llama.cpp load settings Corral saves per model, and their translation into ``llama_cpp.Llama`` arguments.

The core already declares ``n_ctx``, ``n_gpu_layers``, ``threads`` and ``seed`` (``corral.settings``); the
specs here add every other option users know from llama.cpp and text-generation-webui. Nothing in this
module imports llama_cpp at import time: the specs are read when plugins register.
"""

from __future__ import annotations

from typing import Any, Mapping

from corral.api import CACHE_TYPES, LLAMA_CPP_SETTINGS, NUMA_STRATEGIES, ROPE_SCALING, SPLIT_MODES
from corral.api import InvalidSetting
from corral.api import Model, SettingSpec
from corral.api import DEFAULT_SETTINGS, THINKING

#: KV cache element types llama.cpp accepts for ``cache_type_k`` / ``cache_type_v``, with their ggml type ids
#: (ggml.h's ``enum ggml_type``; llama-cpp-python does not export every one of them as a constant).
GGML_CACHE_TYPES = {"f32": 0, "f16": 1, "bf16": 30, "q8_0": 8, "q4_0": 2, "q4_1": 3, "iq4_nl": 20, "q5_0": 6, "q5_1": 7}
#: Cache types that store the V cache quantized, which llama.cpp only allows with flash attention.
_QUANTIZED_CACHE = frozenset(CACHE_TYPES) - {"f32", "f16", "bf16"}

SETTINGS: tuple[SettingSpec, ...] = (
    *LLAMA_CPP_SETTINGS,
    SettingSpec("chat_format", str, "use one of llama-cpp-python's named chat formats instead of a template", None),
    SettingSpec("verbose", bool, "show llama.cpp's own log on stderr", False),
    *DEFAULT_SETTINGS,  # the model's own system prompt and sampling defaults
    THINKING,  # thinking off for every request (templates with enable_thinking)
)


def _choice(settings: Mapping[str, Any], name: str, choices: tuple[str, ...], default: str | None) -> str | None:
    value = settings.get(name, default)
    if value is not None and value not in choices:
        raise InvalidSetting(f"setting {name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def context_length(model: Model, settings: Mapping[str, Any]) -> int:
    """The context to allocate: ``n_ctx`` when set, else the model's own (0 lets llama.cpp read it)."""
    n_ctx = int(settings.get("n_ctx") or 0)
    return n_ctx or int(model.facts.context_length or 0)


def llama_kwargs(model: Model, settings: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword arguments for ``llama_cpp.Llama`` from a model's saved settings (plus overrides).

    Raises :class:`InvalidSetting` for combinations llama.cpp would refuse with a less clear message.
    """
    import llama_cpp

    cache_k = _choice(settings, "cache_type_k", CACHE_TYPES, "f16")
    cache_v = _choice(settings, "cache_type_v", CACHE_TYPES, "f16")
    flash_attn = bool(settings.get("flash_attn", False))
    if cache_v in _QUANTIZED_CACHE and not flash_attn:
        raise InvalidSetting(
            f"{model.name}: cache_type_v={cache_v} needs flash attention; "
            f"corral settings {model.name} --set flash_attn=true (or cache_type_v=f16)"
        )
    numa = _choice(settings, "numa", NUMA_STRATEGIES, "off")
    split = _choice(settings, "split_mode", SPLIT_MODES, "layer")
    rope = _choice(settings, "rope_scaling_type", ROPE_SCALING, None)
    n_batch = int(settings.get("n_batch") or 512)
    n_ubatch = int(settings.get("n_ubatch") or 512)
    if n_ubatch > n_batch:
        raise InvalidSetting(f"{model.name}: n_ubatch ({n_ubatch}) cannot be larger than n_batch ({n_batch})")
    tensor_split = settings.get("tensor_split")
    if tensor_split is not None:
        tensor_split = [float(v) for v in tensor_split]
        if len(tensor_split) > llama_cpp.llama_max_devices():
            raise InvalidSetting(
                f"{model.name}: tensor_split names {len(tensor_split)} GPUs; "
                f"llama.cpp handles at most {llama_cpp.llama_max_devices()}"
            )
    kwargs: dict[str, Any] = {
        "n_ctx": context_length(model, settings),
        "n_gpu_layers": int(settings.get("n_gpu_layers") or 0),
        "n_threads": int(settings.get("threads") or 0) or None,
        "n_threads_batch": int(settings.get("threads_batch") or 0) or None,
        "n_batch": n_batch,
        "n_ubatch": n_ubatch,
        "use_mmap": bool(settings.get("use_mmap", True)),
        "use_mlock": bool(settings.get("use_mlock", False)),
        "numa": getattr(llama_cpp, f"GGML_NUMA_STRATEGY_{'DISABLED' if numa == 'off' else numa.upper()}"),
        "tensor_split": tensor_split,
        "main_gpu": int(settings.get("main_gpu") or 0),
        "split_mode": getattr(llama_cpp, f"LLAMA_SPLIT_MODE_{split.upper()}"),
        "rope_freq_base": float(settings.get("rope_freq_base") or 0.0),
        "rope_freq_scale": float(settings.get("rope_freq_scale") or 0.0),
        "rope_scaling_type": (
            getattr(llama_cpp, f"LLAMA_ROPE_SCALING_TYPE_{rope.upper()}")
            if rope
            else llama_cpp.LLAMA_ROPE_SCALING_TYPE_UNSPECIFIED
        ),
        "flash_attn": flash_attn,
        "type_k": GGML_CACHE_TYPES[cache_k],
        "type_v": GGML_CACHE_TYPES[cache_v],
        "offload_kqv": bool(settings.get("offload_kqv", True)),
        "swa_full": bool(settings.get("swa_full", True)),
        "verbose": bool(settings.get("verbose", False)),
    }
    if settings.get("seed") is not None:
        kwargs["seed"] = int(settings["seed"])
    return kwargs
