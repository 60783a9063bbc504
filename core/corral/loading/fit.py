"""The memory fit, the one rule ``corral fit`` and the check before every load share:
:func:`corral.estimate.estimate_memory` against :func:`corral.estimate.free_memory`, counting what the
load will unload first as free.

A model the estimator cannot size (a missing or unreadable file: the load itself will say so) is
allowed: the check exists to refuse loads known not to fit, not to block the unknown.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from corral import estimate
from corral.errors import CorralError, InsufficientMemory
from corral.records import LoraRequest, MemoryEstimate, Model


def gib(n: int) -> str:
    return f"{n / 1024**3:.2f} GiB"


def shortfalls(need: MemoryEstimate, free_ram: int, free_vram: int | None,
               reclaimable: tuple[int, int] = (0, 0)) -> list[str]:
    """What does not fit of ``need`` in the free memory (empty: it fits), each as "needs X of ... but
    only Y is free". Without a GPU everything lands in system memory; ``reclaimable`` is ``(ram,
    vram)`` that models replaced by the load give back before it starts."""
    back_ram, back_vram = reclaimable
    if free_vram is None:
        have = free_ram + back_ram + back_vram
        return [f"needs about {gib(need.total_bytes)} of memory but only {gib(have)} is free"] \
            if need.total_bytes > have else []
    problems = []
    if need.ram_bytes > free_ram + back_ram:
        problems.append(f"needs about {gib(need.ram_bytes)} of system memory but only {gib(free_ram + back_ram)} is free")
    if need.vram_bytes > free_vram + back_vram:
        problems.append(f"needs about {gib(need.vram_bytes)} of GPU memory but only {gib(free_vram + back_vram)} "
                        "is free (lower n_gpu_layers)")
    return problems


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
        need = estimate.estimate_memory(model, dict(settings), loras=loras)
    except CorralError:
        return
    if not need.total_bytes:
        return
    problems = shortfalls(need, *estimate.free_memory(), reclaimable=reclaimable)
    if problems:
        raise InsufficientMemory(
            f"{model.name} {'; '.join(problems)}; unload other models, lower n_ctx, or use --force to try anyway"
        )
