"""System readings: CPU, memory, and GPUs through the registered GPU vendor plugins.

:func:`system_status` is what ``corral monitor`` prints and the server's ``/corral/status`` reports.
Memory (and each GPU's memory) at or above the warning threshold is flagged; the threshold is
``CORRAL_MEMORY_WARN`` (percent, default 90) unless the caller passes one.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from corral.errors import InvalidSetting
from corral.records import GpuInfo, SystemStatus

if TYPE_CHECKING:
    from corral.plugins import PluginHost

DEFAULT_WARN_PERCENT = 90.0


def warn_threshold(value: float | str | None = None) -> float:
    """The warning threshold in percent: ``value``, else ``CORRAL_MEMORY_WARN``, else 90."""
    raw = value if value is not None else os.environ.get("CORRAL_MEMORY_WARN")
    if raw is None or raw == "":
        return DEFAULT_WARN_PERCENT
    try:
        percent = float(str(raw).strip().rstrip("%"))
    except ValueError:
        raise InvalidSetting(f"memory warning threshold {raw!r} is not a number; use a percent such as 90") from None
    if not 0 < percent <= 100:
        raise InvalidSetting(f"memory warning threshold {raw!r} must be between 0 and 100 (percent)")
    return percent


def read_gpus(host: PluginHost) -> list[GpuInfo]:
    """Every GPU that the registered vendor plugins see, in plugin order.

    A vendor whose probe fails is skipped with a note on stderr: a broken GPU plugin must not break the
    monitor or a load.
    """
    gpus: list[GpuInfo] = []
    for vendor in host.gpu_vendors:
        try:
            gpus.extend(vendor().probe())
        except Exception as exc:  # noqa: BLE001 - contain a plugin's failure
            print(f"corral: GPU vendor {vendor.name!r} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
    return gpus


def percent(used: int | None, total: int | None) -> float | None:
    if not total or used is None:
        return None
    return 100.0 * used / total


def system_status(
    host: PluginHost | None = None, *, warn_percent: float | None = None, interval: float | None = 0.1
) -> SystemStatus:
    """One reading of CPU use, memory and GPUs, with a warning for each figure over the threshold.

    :param host: the plugin host whose GPU vendors are asked (default: the process-wide one).
    :param interval: seconds to sample CPU use over; ``None`` compares with the previous call (for
        callers that poll, such as a server).
    """
    import psutil

    if host is None:
        from corral.plugins import get_host

        host = get_host()
    threshold = warn_threshold(warn_percent)
    vm = psutil.virtual_memory()
    used = vm.total - vm.available
    mem_percent = percent(used, vm.total) or 0.0
    gpus = tuple(read_gpus(host))
    warnings = []
    if mem_percent >= threshold:
        warnings.append(f"memory {mem_percent:.0f}% used (warning at {threshold:g}%)")
    for gpu in gpus:
        share = percent(gpu.vram_used, gpu.vram_total)
        if share is not None and share >= threshold:
            warnings.append(f"GPU {gpu.index} ({gpu.name}) memory {share:.0f}% used (warning at {threshold:g}%)")
    return SystemStatus(
        cpu_percent=float(psutil.cpu_percent(interval=interval)),
        memory_total=vm.total,
        memory_used=used,
        memory_available=vm.available,
        memory_percent=round(mem_percent, 1),
        gpus=gpus,
        warn_percent=threshold,
        warnings=tuple(warnings),
    )


__all__ = ["system_status", "read_gpus", "warn_threshold"]
