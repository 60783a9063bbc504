"""Memory estimates: what loading a model with given settings will take, before loading it.

:func:`estimate_memory` reads the model's own files (GGUF headers through llama.cpp's memory model,
safetensors headers × dtype for torch models) and splits the bytes between system memory and GPU memory;
:func:`free_memory` says what is free now. The runtime compares the two before every load; ``corral fit``
shows them beside what the last load with the same settings really took.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping

from corral.records import Format, Lora, LoraRequest, MemoryEstimate, Model


def _lora_paths(loras: Iterable[Lora | LoraRequest | Path | str]) -> list[Path]:
    paths = []
    for item in loras:
        if isinstance(item, LoraRequest):
            item = item.lora
        paths.append(Path(item.path) if isinstance(item, Lora) else Path(item))
    return paths


def estimate_memory(
    model: Model, settings: Mapping[str, Any], *, loras: Iterable[Lora | LoraRequest | Path | str] = ()
) -> MemoryEstimate:
    """Estimate the memory a load of ``model`` with ``settings`` takes.

    :param settings: the load settings (``n_ctx`` with 0 = the model's own, ``n_gpu_layers``,
        ``n_ubatch``, ``type_k``/``type_v``, ``flash_attn``, ``swa_full`` for GGUF; ``dtype`` and
        ``device`` for torch models).
    :param loras: adapters loaded with it (records, requests or paths).
    :raises NotFound: a file of the model is missing.
    :raises DetectionError: a file is malformed.
    """
    paths = _lora_paths(loras)
    if model.format == Format.GGUF:
        from corral.estimate.gguf import estimate_gguf

        return estimate_gguf(model, settings, paths)
    from corral.estimate.weights import estimate_weights

    return estimate_weights(model, settings, paths)


def free_memory() -> tuple[int, int | None]:
    """(free system memory in bytes, free GPU memory in bytes or None when no GPU reports its memory).

    GPU memory is summed over every GPU that the installed vendor plugins see.
    """
    import psutil

    from corral.monitor import read_gpus
    from corral.plugins import get_host

    ram = psutil.virtual_memory().available
    gpus = [g for g in read_gpus(get_host()) if g.vram_total]
    if not gpus:
        return ram, None
    return ram, sum(g.vram_total - (g.vram_used or 0) for g in gpus)


__all__ = ["estimate_memory", "free_memory"]
