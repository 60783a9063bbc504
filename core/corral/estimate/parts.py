"""Bytes per part of an estimate, kept apart for system memory and GPU memory."""

from __future__ import annotations

from collections import defaultdict
from typing import Sequence

from corral.records import MemoryEstimate

#: Every estimate names these parts, in this order (0 where a part does not apply).
PARTS = ("weights", "kv_cache", "compute", "mmproj", "lora", "overhead")


class Split:
    """Accumulates bytes per part on the CPU side (``ram``) and the GPU side (``vram``)."""

    def __init__(self) -> None:
        self.ram: dict[str, int] = defaultdict(int)
        self.vram: dict[str, int] = defaultdict(int)

    def add(self, part: str, nbytes: int, on_gpu: bool = False) -> None:
        (self.vram if on_gpu else self.ram)[part] += int(nbytes)

    def finish(self, n_ctx: int | None, notes: Sequence[str] = ()) -> MemoryEstimate:
        """The :class:`MemoryEstimate` these bytes add up to."""
        parts = {name: self.ram.get(name, 0) + self.vram.get(name, 0) for name in PARTS}
        ram, vram = sum(self.ram.values()), sum(self.vram.values())
        return MemoryEstimate(
            ram_bytes=ram, vram_bytes=vram, total_bytes=ram + vram, parts=parts, n_ctx=n_ctx, notes=tuple(notes)
        )
