"""The memory check before a load: :func:`corral.estimate.estimate_memory` against
:func:`corral.estimate.free_memory`, counting what the load will unload first as free.

A model the estimator cannot size (a missing or unreadable file: the load itself will say so) is
allowed: the check exists to refuse loads known not to fit, not to block the unknown.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from corral.errors import CorralError, InsufficientMemory
from corral.records import LoraRequest, Model


def gib(n: int) -> str:
    return f"{n / 1024**3:.2f} GiB"


def check_fits(
    model: Model,
    settings: Mapping[str, Any],
    *,
    loras: Sequence[LoraRequest] = (),
    force: bool = False,
    reclaimable: tuple[int, int] = (0, 0),
) -> None:
    """Refuse with numbers when the estimate exceeds free memory (``force`` skips the check).

    ``reclaimable`` is ``(ram, vram)`` that models replaced by this load free before it starts.
    """
    if force:
        return
    try:
        from corral import estimate
    except ImportError:  # pragma: no cover - a core without the estimator
        return
    try:
        need = estimate.estimate_memory(model, dict(settings), loras=loras)
    except CorralError:
        return
    if not need.total_bytes:
        return
    free_ram, free_vram = estimate.free_memory()
    back_ram, back_vram = reclaimable
    advice = "unload other models, lower n_ctx, or use --force to try anyway"
    if free_vram is None:  # no GPU: everything lands in system memory
        have = free_ram + back_ram + back_vram
        if need.total_bytes > have:
            raise InsufficientMemory(
                f"{model.name} needs about {gib(need.total_bytes)} of memory but only {gib(have)} is free; {advice}"
            )
        return
    if need.ram_bytes > free_ram + back_ram:
        raise InsufficientMemory(
            f"{model.name} needs about {gib(need.ram_bytes)} of system memory but only "
            f"{gib(free_ram + back_ram)} is free; {advice}"
        )
    if need.vram_bytes > free_vram + back_vram:
        raise InsufficientMemory(
            f"{model.name} needs about {gib(need.vram_bytes)} of GPU memory but only "
            f"{gib(free_vram + back_vram)} is free; lower n_gpu_layers, {advice}"
        )
