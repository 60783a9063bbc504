"""GPU vendors: readers of GPU facts (name, VRAM, temperature, utilisation)."""

from __future__ import annotations

from typing import ClassVar, Mapping, Sequence

from corral.records import GpuInfo


class GpuVendor:
    """Reads GPU facts for one vendor."""

    name: ClassVar[str] = ""
    distribution: ClassVar[str] = ""
    requires: ClassVar[tuple[str, ...]] = ()

    def probe(self) -> list[GpuInfo]:
        """The GPUs of this vendor on this machine (empty when there are none)."""
        raise NotImplementedError

    def process_memory(self, pids: Sequence[int]) -> Mapping[int, int] | None:
        """GPU memory in bytes that each of ``pids`` holds, over all of this vendor's GPUs, for the
        processes the driver reports (a process it does not list is left out). None: this vendor cannot
        tell memory per process. The runner executor measures a loaded model's VRAM with it."""
        return None
