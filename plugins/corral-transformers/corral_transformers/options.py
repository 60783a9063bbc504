"""The transformers load settings Corral saves per model, and their translation into ``from_pretrained``
arguments: device and device map, precision, 8-/4-bit quantization, memory limits with offload, remote code.

The core already declares ``n_ctx``, ``threads``, ``dtype``, ``seed`` and ``trust_remote_code``
(``corral.settings``). Nothing here imports torch at import time: the specs are read when plugins register.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping

from attrs import frozen

from corral.api import InvalidSetting, PluginMissing
from corral.api import Model, SettingSpec
from corral.api import DEFAULT_SETTINGS, THINKING

DEVICE_MAPS = ("auto", "balanced", "balanced_low_0", "sequential")
QUANTIZATIONS = ("none", "int8", "int4", "nf4")
ATTENTION = ("eager", "sdpa", "flash_attention_2")
DTYPES = ("auto", "float32", "float16", "bfloat16")

SETTINGS: tuple[SettingSpec, ...] = (
    SettingSpec("device", str, "auto (a GPU when there is one), cpu, cuda, cuda:N or mps", None),
    SettingSpec("device_map", str, "spread the model over every GPU (then CPU and disk past max_memory)", None,
                DEVICE_MAPS),
    SettingSpec("max_memory", str, "memory limit per device, the rest offloaded: e.g. 0=20GiB,1=20GiB,cpu=48GiB",
                None),
    SettingSpec("offload_folder", str, "folder for weights that fit in no device's max_memory", None),
    SettingSpec("quantization", str, "load the weights quantized by bitsandbytes (CUDA GPUs only)", "none",
                QUANTIZATIONS),
    SettingSpec("double_quant", bool, "int4/nf4: quantize the quantization constants too", False),
    SettingSpec("low_cpu_mem_usage", bool, "build the model without a second copy of the weights in RAM", True),
    SettingSpec("attn_implementation", str, "attention kernel; unset = transformers' choice", None, ATTENTION),
    SettingSpec("verbose", bool, "show transformers' own progress bars and warnings while loading", False),
    SettingSpec("chat_template", str, "a Jinja chat template (or the path of a .jinja file) replacing the tokenizer's",
                None),
    *DEFAULT_SETTINGS,  # the model's own system prompt and sampling defaults
    THINKING,  # thinking off for every request (templates with enable_thinking)
)

_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
_MEMORY = re.compile(r"^\d+(\.\d+)?\s*([KMGT]i?B|B)?$", re.IGNORECASE)


@frozen
class LoadOptions:
    """What a load asks of transformers, checked. ``device`` is where inputs go when ``device_map`` is None."""

    device: str
    device_map: Any
    dtype: Any
    quantization: str
    kwargs: Mapping[str, Any]


def _hint(model: Model, setting: str) -> str:
    return f"corral settings {model.name} --unset {setting}"


def parse_max_memory(model: Model, value: str) -> dict[Any, str]:
    """``"0=20GiB,1=20GiB,cpu=48GiB"`` as accelerate wants it: ``{0: "20GiB", 1: "20GiB", "cpu": "48GiB"}``."""
    limits: dict[Any, str] = {}
    for part in (p.strip() for p in str(value).split(",")):
        if not part:
            continue
        key, sep, amount = (s.strip() for s in part.partition("="))
        if not sep or not _MEMORY.match(amount):
            raise InvalidSetting(
                f"{model.name}: max_memory entry {part!r} is not DEVICE=SIZE (e.g. 0=20GiB or cpu=48GiB)"
            )
        if key.isdigit():
            limits[int(key)] = amount
        elif key.lower() in ("cpu", "mps", "disk"):
            limits[key.lower()] = amount
        else:
            raise InvalidSetting(f"{model.name}: max_memory names device {key!r}; use a GPU index, cpu or mps")
    if not limits:
        raise InvalidSetting(f"{model.name}: max_memory is empty; give DEVICE=SIZE pairs or {_hint(model, 'max_memory')}")
    return limits


def _check_device(model: Model, device: str) -> str:
    """The device the load runs on: ``auto`` resolved, a missing GPU refused with what to do."""
    import torch

    if not _DEVICE.match(device):
        raise InvalidSetting(f"{model.name}: device {device!r} is not auto, cpu, cuda, cuda:N or mps")
    cuda = torch.cuda.is_available()
    mps = bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()
    if device == "auto":
        return "cuda" if cuda else "mps" if mps else "cpu"
    if device.startswith("cuda"):
        if not cuda:
            built = f"built for CUDA {torch.version.cuda}" if torch.version.cuda else "built without CUDA"
            raise InvalidSetting(
                f"{model.name}: device={device} but torch ({torch.__version__}, {built}) sees no CUDA GPU; "
                f"corral settings {model.name} --set device=cpu"
            )
        index = int(device.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise InvalidSetting(
                f"{model.name}: device={device} but there are {torch.cuda.device_count()} CUDA GPU(s) (0-based)"
            )
    if device == "mps" and not mps:
        raise InvalidSetting(f"{model.name}: device=mps but this torch has no Apple GPU; corral settings "
                             f"{model.name} --set device=cpu")
    return device


def _quantization_config(model: Model, settings: Mapping[str, Any], kind: str, device: str, dtype: Any) -> Any:
    """bitsandbytes' config for ``kind``; refused clearly where bitsandbytes cannot run (no CUDA GPU)."""
    import importlib.util

    import torch

    if not torch.cuda.is_available():
        raise InvalidSetting(
            f"{model.name}: quantization={kind} uses bitsandbytes, which needs an NVIDIA GPU with CUDA, and torch "
            f"sees none here; {_hint(model, 'quantization')} (or pick a smaller dtype: --set dtype=bfloat16)"
        )
    if not device.startswith("cuda"):
        raise InvalidSetting(
            f"{model.name}: quantization={kind} runs on a CUDA GPU, not device={device}; "
            f"corral settings {model.name} --set device=auto"
        )
    if importlib.util.find_spec("bitsandbytes") is None:
        raise PluginMissing(
            f"{model.name}: quantization={kind} needs bitsandbytes: pip install 'corral-transformers[quantization]'",
            distribution="bitsandbytes",
        )
    from transformers import BitsAndBytesConfig

    if kind == "int8":
        return BitsAndBytesConfig(load_in_8bit=True)
    compute = dtype if isinstance(dtype, torch.dtype) and dtype != torch.float32 else torch.bfloat16
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4" if kind == "nf4" else "fp4",
        bnb_4bit_compute_dtype=compute,
        bnb_4bit_use_double_quant=bool(settings.get("double_quant", False)),
    )


def _dtype(model: Model, settings: Mapping[str, Any]) -> Any:
    import torch

    name = settings.get("dtype") or "auto"
    if name not in DTYPES:
        raise InvalidSetting(f"{model.name}: dtype must be one of {', '.join(DTYPES)}, got {name!r}")
    return "auto" if name == "auto" else getattr(torch, name)


def chat_template_setting(model: Model, settings: Mapping[str, Any]) -> str | None:
    """The ``chat_template`` setting: Jinja source, or read from the ``.jinja`` file it names."""
    value = settings.get("chat_template")
    if not value:
        return None
    value = str(value)
    if "{" not in value and value.endswith((".jinja", ".j2", ".txt")):
        path = Path(value).expanduser()
        try:
            return path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidSetting(f"{model.name}: chat_template file {path} cannot be read ({exc})") from None
    return value


def load_options(model: Model, settings: Mapping[str, Any], *, transformers_5: bool) -> LoadOptions:
    """Check ``settings`` and turn them into ``from_pretrained`` keyword arguments.

    Raises :class:`InvalidSetting` for a device this machine lacks, quantization without CUDA, or a
    malformed ``max_memory``, and :class:`PluginMissing` when a needed library is not installed.
    """
    import importlib.util

    device = _check_device(model, str(settings.get("device") or "auto"))
    dtype = _dtype(model, settings)
    quantization = str(settings.get("quantization") or "none")
    if quantization not in QUANTIZATIONS:
        raise InvalidSetting(f"{model.name}: quantization must be one of {', '.join(QUANTIZATIONS)}")
    device_map = settings.get("device_map")
    max_memory = settings.get("max_memory")
    if device_map is None and max_memory:
        device_map = "auto"  # limits only mean something when accelerate places the layers
    if device_map is None and str(settings.get("device") or "auto") == "auto" and device == "cuda":
        import torch

        if torch.cuda.device_count() > 1:
            device_map = "auto"  # spread over every GPU, as text-generation-webui's auto-devices does
    if device_map is None and device != "cpu":
        # Straight onto the device (bitsandbytes quantizes while placing), never a full copy in RAM first.
        device_map = {"": device}
    kwargs: dict[str, Any] = {"trust_remote_code": bool(settings.get("trust_remote_code", False))}
    kwargs["dtype" if transformers_5 else "torch_dtype"] = dtype
    if not transformers_5:  # transformers 5 always builds the model without a second copy in RAM
        kwargs["low_cpu_mem_usage"] = bool(settings.get("low_cpu_mem_usage", True)) or device_map is not None
    if device_map is not None:
        if importlib.util.find_spec("accelerate") is None:
            raise PluginMissing(f"{model.name}: device_map and max_memory need accelerate: pip install accelerate",
                                distribution="accelerate")
        kwargs["device_map"] = device_map
    if max_memory:
        kwargs["max_memory"] = parse_max_memory(model, max_memory)
    if settings.get("offload_folder"):
        kwargs["offload_folder"] = str(Path(str(settings["offload_folder"])).expanduser())
    if quantization != "none":
        kwargs["quantization_config"] = _quantization_config(model, settings, quantization, device, dtype)
    attention = settings.get("attn_implementation")
    if attention:
        if attention not in ATTENTION:
            raise InvalidSetting(f"{model.name}: attn_implementation must be one of {', '.join(ATTENTION)}")
        kwargs["attn_implementation"] = attention
    return LoadOptions(device=device, device_map=device_map, dtype=dtype, quantization=quantization, kwargs=kwargs)
