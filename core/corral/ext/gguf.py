"""Checks every llama.cpp-based driver runs before llama.cpp reads a GGUF.

llama.cpp is C++: a file that lies in its header can make it abort the whole process (an assertion, a
division by zero) instead of failing. So before llama.cpp sees a file, Corral's own bounded header
parser reads it (truncation, hostile lengths, missing data) and the hyperparameters llama.cpp divides by
are checked; the LoRA is checked against the base's tensor shapes and the projector against the
model's width. Drivers (corral-llamacpp, corral-llama-server) call these through :mod:`corral.api`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from corral.detect.gguf import detect_gguf, read_gguf_header
from corral.detect.lora_check import check_lora_fits
from corral.errors import DetectionError, Incompatible
from corral.records import ComponentKind, Format, Kind, LoraRequest, Model, SettingSpec

#: KV cache element types llama.cpp accepts for ``cache_type_k`` / ``cache_type_v``.
CACHE_TYPES = ("f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1")
NUMA_STRATEGIES = ("off", "distribute", "isolate", "numactl", "mirror")
SPLIT_MODES = ("none", "layer", "row")
ROPE_SCALING = ("none", "linear", "yarn", "longrope")

#: The llama.cpp load settings every llama.cpp-based driver declares under the same names, so a model's
#: saved settings mean the same under either driver (the core declares n_ctx, n_gpu_layers, threads, seed).
LLAMA_CPP_SETTINGS: tuple[SettingSpec, ...] = (
    SettingSpec("threads_batch", int, "CPU threads for prompt processing; 0 = all cores", 0, minimum=0),
    SettingSpec("n_batch", int, "logical batch size for prompt processing", 512, minimum=1),
    SettingSpec("n_ubatch", int, "physical batch size (at most n_batch)", 512, minimum=1),
    SettingSpec("use_mmap", bool, "memory-map the model file instead of reading it", True),
    SettingSpec("use_mlock", bool, "lock the model in RAM so the OS cannot swap it out", False),
    SettingSpec("numa", str, "NUMA strategy", "off", NUMA_STRATEGIES),
    SettingSpec("tensor_split", list, "share of the model per GPU, e.g. 3,1", None),
    SettingSpec("main_gpu", int, "GPU for the whole model (split_mode none) or scratch buffers", 0, minimum=0),
    SettingSpec("split_mode", str, "how to spread the model over several GPUs", "layer", SPLIT_MODES),
    SettingSpec("rope_freq_base", float, "RoPE base frequency; 0 = the model's", 0.0, minimum=0),
    SettingSpec("rope_freq_scale", float, "RoPE frequency scale (context extension); 0 = the model's", 0.0, minimum=0),
    SettingSpec("rope_scaling_type", str, "RoPE scaling; unset = the model's", None, ROPE_SCALING),
    SettingSpec("flash_attn", bool, "use flash attention", False),
    SettingSpec("cache_type_k", str, "KV cache type for K", "f16", CACHE_TYPES),
    SettingSpec("cache_type_v", str, "KV cache type for V (quantized types need flash_attn)", "f16", CACHE_TYPES),
    SettingSpec("offload_kqv", bool, "keep the KV cache on the GPU with offloaded layers", True),
    SettingSpec("swa_full", bool, "sliding-window layers keep a cache as long as the context (off: only "
                "the window, less memory, no prompt-cache reuse across turns)", True),
    SettingSpec("chat_template", str, "a Jinja chat template, or a built-in name (gemma, chatml, llama3, ...)", None),
)  # fmt: skip

#: Hyperparameters that llama.cpp divides by or sizes buffers with: zero or absent means a broken header.
_POSITIVE_HPARAMS = ("block_count", "embedding_length", "attention.head_count")


def preflight_gguf(model: Model) -> Any:
    """Check every file of ``model`` the way llama.cpp will need it; returns the first part's header.

    Raises :class:`DetectionError` naming the file for a truncated or malformed GGUF, an adapter or
    projector imported as a model, or hyperparameters that would crash llama.cpp.
    """
    if model.format != Format.GGUF:
        raise Incompatible(f"{model.name} is {model.format}; llama.cpp loads GGUF files only")
    parts = model.paths or (model.path,)
    first = None
    for part in parts:
        if not Path(part).is_file():
            raise DetectionError(f"{part}: the model file is gone; if it moved: corral edit {model.name} --path NEW_PATH, "
                                 f"else re-import it")
        header = read_gguf_header(part)
        if first is not None:
            continue  # later parts of a split GGUF carry tensors, not the model's metadata
        first = header
        meta = header.metadata
        if meta.get("general.type") in ("adapter", "mmproj") or header.architecture == "clip":
            raise DetectionError(f"{part} is a LoRA adapter or a projector, not a model llama.cpp can run")
        if not header.tensors:
            raise DetectionError(f"{part}: a GGUF without tensors, not a model")
        arch = header.architecture
        if not arch:
            raise DetectionError(f"{part}: no general.architecture in the GGUF metadata; convert the model again")
        for key in _POSITIVE_HPARAMS:
            value = header.arch_value(key)
            if value is None and key == "attention.head_count":
                continue  # recurrent architectures (Mamba, RWKV) have no attention heads
            values = value if isinstance(value, tuple) else (value,)
            if not (
                values
                and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values)
                and max(values) > 0
            ):
                raise DetectionError(
                    f"{part}: {arch}.{key} is {value!r}; llama.cpp cannot run a model with that "
                    "(the file is broken or hostile)"
                )
        context = header.arch_value("context_length")
        if context is not None and (not isinstance(context, int) or context <= 0):
            raise DetectionError(f"{part}: {arch}.context_length is {context!r}, not a context length")
    return first


def gguf_lora(model: Model, loras: Sequence[LoraRequest]) -> tuple[str, float] | None:
    """The one GGUF adapter to apply, as (path, scale), after checking it fits ``model``."""
    if not loras:
        return None
    if len(loras) > 1:
        raise Incompatible(f"{model.name}: llama.cpp applies one LoRA per load, {len(loras)} were asked")
    request = loras[0]
    lora = request.lora
    if lora.format != Format.GGUF:
        raise Incompatible(
            f"LoRA {lora.name} is {lora.format}; llama.cpp needs a GGUF adapter "
            "(convert it with llama.cpp's convert_lora_to_gguf.py)"
        )
    detection = detect_gguf(Path(lora.path))
    if detection.kind != Kind.LORA:
        raise Incompatible(f"{lora.path} is not a LoRA adapter (detected a {detection.kind})")
    check_lora_fits(model, detection)
    return str(lora.path), float(request.weight)


def gguf_projector(model: Model) -> Path | None:
    """The model's mmproj file, after checking its header and that its output width fits the model."""
    component = model.component(ComponentKind.MMPROJ)
    if component is None:
        return None
    detection = detect_gguf(Path(component.path))
    if detection.kind != Kind.COMPONENT or detection.component != ComponentKind.MMPROJ:
        raise Incompatible(f"{component.path} is not an mmproj projector (detected a {detection.kind})")
    width = detection.facts.extra.get("projection_dim")
    hidden = model.facts.hidden_size
    if isinstance(width, int) and hidden and width != hidden:
        raise Incompatible(
            f"mmproj {Path(component.path).name} projects to {width} dimensions, but {model.name} is {hidden} wide; "
            "attach the projector made for this model"
        )
    return Path(component.path)
