"""The load settings of the llama-server driver, and their translation into ``xllamacpp.CommonParams``.

The names are corral-llamacpp's (the core declares ``n_ctx``, ``n_gpu_layers``, ``threads`` and ``seed``),
so a model's saved settings mean the same under either driver; ``parallel`` and the prompt-cache settings
are this driver's own. ``n_ctx`` is the context of one slot, as Ollama counts it: llama.cpp is given
``n_ctx × parallel`` cells, one stream of ``n_ctx`` per slot. Nothing here imports xllamacpp at import
time: the specs are read when plugins register.
"""

from __future__ import annotations

from typing import Any, Mapping

from corral.api import DEFAULT_SETTINGS, THINKING
from corral.api import CACHE_TYPES, LLAMA_CPP_SETTINGS, NUMA_STRATEGIES, ROPE_SCALING, SPLIT_MODES
from corral.api import InvalidSetting
from corral.api import Model, SettingSpec

#: Requests one loaded model decodes together when its ``parallel`` setting is unset.
DEFAULT_PARALLEL = 4
#: Cache types that store the V cache quantized, which llama.cpp only allows with flash attention.
_QUANTIZED_CACHE = frozenset(CACHE_TYPES) - {"f32", "f16", "bf16"}

SETTINGS: tuple[SettingSpec, ...] = (
    SettingSpec("driver", str, "the driver that loads this model when several can (llama-server, llamacpp)", None),
    SettingSpec("parallel", int, "requests decoded together in one batch (slots, each with n_ctx tokens)",
                DEFAULT_PARALLEL, minimum=1, maximum=256),
    SettingSpec("cache_prompt", bool, "reuse a slot's cached prompt prefix for the next request", True),
    SettingSpec("cache_reuse", int, "smallest chunk of a cached prompt reused by shifting the cache; 0 = off",
                0, minimum=0),
    SettingSpec("cache_ram_mib", int, "host memory for prompts evicted from the slots (MiB); 0 = off", 0,
                minimum=0),
    SettingSpec("draft_model", str, "a small GGUF of the same vocabulary for speculative decoding", None),
    SettingSpec("draft_max", int, "tokens the draft model proposes per step", 16, minimum=1, maximum=64),
    *LLAMA_CPP_SETTINGS,
    SettingSpec("verbose", bool, "show llama.cpp's own log on stderr", False),
    THINKING,  # thinking off for every request (templates with enable_thinking)
    *DEFAULT_SETTINGS,  # the model's own system prompt and sampling defaults
)  # fmt: skip


def _choice(settings: Mapping[str, Any], name: str, choices: tuple[str, ...], default: str | None) -> str | None:
    value = settings.get(name, default)
    if value is not None and value not in choices:
        raise InvalidSetting(f"setting {name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def parallel(settings: Mapping[str, Any]) -> int:
    """The slots of a load: the ``parallel`` setting, else :data:`DEFAULT_PARALLEL`."""
    return int(settings.get("parallel") or DEFAULT_PARALLEL)


def context_length(model: Model, settings: Mapping[str, Any]) -> int:
    """The context of one slot: ``n_ctx`` when set, else the model's own (4096 when the file does not say)."""
    n_ctx = int(settings.get("n_ctx") or 0)
    return n_ctx or int(model.facts.context_length or 0) or 4096


def _load_mode(x: Any, mmap: bool, mlock: bool) -> Any:
    mode = x.llama_load_mode
    if mmap:
        return mode.LLAMA_LOAD_MODE_MMAP_MLOCK if mlock else mode.LLAMA_LOAD_MODE_MMAP
    return mode.LLAMA_LOAD_MODE_MLOCK if mlock else mode.LLAMA_LOAD_MODE_NONE


def common_params(model: Model, settings: Mapping[str, Any]) -> Any:
    """An ``xllamacpp.CommonParams`` for ``model`` from its settings (the caller adds paths, template, socket).

    Raises :class:`InvalidSetting` for combinations llama.cpp would refuse with a less clear message.
    """
    import xllamacpp as x

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
    slots = parallel(settings)

    p = x.CommonParams()
    p.n_parallel = slots
    p.n_ctx = context_length(model, settings) * slots
    p.kv_unified = False  # one KV stream per slot: a slot's context is its own, as n_ctx promises
    p.cont_batching = True
    p.fit_params = False  # honour the settings; Corral checks memory before the load
    p.n_gpu_layers = int(settings.get("n_gpu_layers") or 0)
    threads = int(settings.get("threads") or 0)
    threads_batch = int(settings.get("threads_batch") or 0) or threads
    if threads:
        p.cpuparams.n_threads = threads
    if threads_batch:
        p.cpuparams_batch.n_threads = threads_batch
    p.n_batch, p.n_ubatch = n_batch, n_ubatch
    p.load_mode = _load_mode(x, bool(settings.get("use_mmap", True)), bool(settings.get("use_mlock", False)))
    p.numa = getattr(x.ggml_numa_strategy, f"GGML_NUMA_STRATEGY_{'DISABLED' if numa == 'off' else numa.upper()}")
    tensor_split = settings.get("tensor_split")
    if tensor_split is not None:
        shares = [float(v) for v in tensor_split]
        room = len(p.tensor_split)
        if len(shares) > room:
            raise InvalidSetting(f"{model.name}: tensor_split names {len(shares)} GPUs; llama.cpp handles at most {room}")
        p.tensor_split = shares + [0.0] * (room - len(shares))
    p.main_gpu = int(settings.get("main_gpu") or 0)
    p.split_mode = getattr(x.llama_split_mode, f"LLAMA_SPLIT_MODE_{split.upper()}")
    p.rope_freq_base = float(settings.get("rope_freq_base") or 0.0)
    p.rope_freq_scale = float(settings.get("rope_freq_scale") or 0.0)
    p.rope_scaling_type = getattr(x.llama_rope_scaling_type, f"LLAMA_ROPE_SCALING_TYPE_{(rope or 'unspecified').upper()}")
    fa = x.llama_flash_attn_type
    p.flash_attn_type = fa.LLAMA_FLASH_ATTN_TYPE_ENABLED if flash_attn else fa.LLAMA_FLASH_ATTN_TYPE_DISABLED
    p.cache_type_k = getattr(x.ggml_type, f"GGML_TYPE_{cache_k.upper()}")
    p.cache_type_v = getattr(x.ggml_type, f"GGML_TYPE_{cache_v.upper()}")
    p.no_kv_offload = not bool(settings.get("offload_kqv", True))
    p.swa_full = bool(settings.get("swa_full", True))
    p.cache_prompt = bool(settings.get("cache_prompt", True))
    p.n_cache_reuse = int(settings.get("cache_reuse") or 0)
    p.cache_ram_mib = int(settings.get("cache_ram_mib") or 0)
    if settings.get("seed") is not None:
        p.sampling.seed = int(settings["seed"])
    p.verbosity = 3 if settings.get("verbose") else 0
    # What a model server bound to one process needs of llama-server: no web UI, no extra endpoints,
    # one HTTP worker for the private socket it insists on opening, no hub downloads.
    p.ui = False
    p.endpoint_slots = False
    p.endpoint_metrics = True
    p.n_threads_http = 1
    p.offline = True
    p.warmup = True
    return p
