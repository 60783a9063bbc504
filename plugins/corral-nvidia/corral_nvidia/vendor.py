"""Read NVIDIA GPUs through NVML: name, memory used and total, temperature, utilisation (all live).

A machine without an NVIDIA GPU has no NVML library or no driver loaded: NVML raises
``NVMLError_LibraryNotFound`` or ``NVMLError_DriverNotLoaded`` from ``nvmlInit``, and the probe answers
with no GPUs. A field a GPU cannot report (temperature on some virtual GPUs, utilisation under MIG) is
left as None rather than failing the whole reading.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from corral.api import GpuVendor
from corral.api import GpuInfo


def _optional(nvml: Any, read: Callable[[], Any]) -> Any:
    try:
        return read()
    except nvml.NVMLError:
        return None


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def read_device(nvml: Any, index: int) -> GpuInfo:
    """One GPU's reading; ``nvml`` is the initialised ``pynvml`` module."""
    handle = nvml.nvmlDeviceGetHandleByIndex(index)
    memory = _optional(nvml, lambda: nvml.nvmlDeviceGetMemoryInfo(handle))
    temperature = _optional(nvml, lambda: nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU))
    utilization = _optional(nvml, lambda: nvml.nvmlDeviceGetUtilizationRates(handle))
    return GpuInfo(
        vendor="nvidia",
        index=index,
        name=_text(_optional(nvml, lambda: nvml.nvmlDeviceGetName(handle)) or f"NVIDIA GPU {index}"),
        vram_total=int(memory.total) if memory is not None else None,
        vram_used=int(memory.used) if memory is not None else None,
        temperature=float(temperature) if temperature is not None else None,
        utilization=float(utilization.gpu) if utilization is not None else None,
    )


class NvidiaVendor(GpuVendor):
    """NVIDIA GPUs, read live through NVML."""

    name = "nvidia"
    distribution = "corral-nvidia"
    requires = ("pynvml",)

    def probe(self) -> list[GpuInfo]:
        """Every NVIDIA GPU with its current memory use, temperature and utilisation; [] without one."""
        try:
            import pynvml
        except ImportError:
            return []  # `corral env` reports the missing nvidia-ml-py with its install line
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError:
            return []  # no NVML library or no driver: no NVIDIA GPU here
        try:
            return [read_device(pynvml, i) for i in range(pynvml.nvmlDeviceGetCount())]
        finally:
            pynvml.nvmlShutdown()

    def process_memory(self, pids: Sequence[int]) -> dict[int, int] | None:
        """GPU memory each of ``pids`` holds over every NVIDIA GPU (compute and graphics contexts), as
        NVML lists it; None without NVML or a GPU. A process NVML lists without a figure (some
        containers, MIG) is left out, as is one in another PID namespace."""
        try:
            import pynvml
        except ImportError:
            return None
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError:
            return None
        wanted, found = set(pids), {}
        try:
            for index in range(pynvml.nvmlDeviceGetCount()):
                handle = pynvml.nvmlDeviceGetHandleByIndex(index)
                seen: set[int] = set()  # a process with both contexts is listed twice on one GPU
                for read in (pynvml.nvmlDeviceGetComputeRunningProcesses,
                             pynvml.nvmlDeviceGetGraphicsRunningProcesses):
                    for proc in _optional(pynvml, lambda: read(handle)) or ():
                        used = getattr(proc, "usedGpuMemory", None)
                        if proc.pid in wanted and proc.pid not in seen and isinstance(used, int):
                            seen.add(proc.pid)
                            found[proc.pid] = found.get(proc.pid, 0) + used
        finally:
            pynvml.nvmlShutdown()
        return found
