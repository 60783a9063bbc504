"""Parse the DRM class in sysfs into :class:`GpuInfo` records.

Each ``card<N>`` under ``/sys/class/drm`` links to its PCI device. The device's ``vendor`` file names the
maker (0x1002 AMD, 0x8086 Intel; NVIDIA's 0x10de is left to the NVML plugin). amdgpu publishes
``mem_info_vram_total`` / ``mem_info_vram_used`` and ``gpu_busy_percent``; Intel discrete GPUs publish
``lmem_total_bytes`` (i915). The name comes from ``product_name`` where the driver has one, else from the
PCI id in ``uevent``; temperature from the device's first ``hwmon`` sensor. Files a driver lacks leave
their field as None. Connector entries (``card0-HDMI-A-1``) and render nodes are not GPUs and are skipped.

The root is injectable (``SysfsGpuVendor(root=...)``, or ``CORRAL_SYSFS_ROOT`` for the plugin the host
creates), so a test, or a container with the host's sysfs mounted elsewhere, can point it at another tree.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import ClassVar

import attrs

from corral.api import GpuVendor
from corral.api import GpuInfo

DEFAULT_ROOT = Path("/sys/class/drm")
VENDORS = {0x1002: ("amd", "AMD"), 0x8086: ("intel", "Intel")}
_CARD = re.compile(r"^card(\d+)$")
#: sysfs files are a few bytes; never read more than this from one.
_MAX_READ = 4096


def _read(path: Path) -> str | None:
    try:
        with open(path, "rb") as f:
            return f.read(_MAX_READ).decode("utf-8", "replace").strip()
    except OSError:
        return None


def _int(path: Path, base: int = 10) -> int | None:
    text = _read(path)
    if not text:
        return None
    try:
        return int(text, base)
    except ValueError:
        return None


def _uevent(device: Path) -> dict[str, str]:
    text = _read(device / "uevent") or ""
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def _temperature(device: Path) -> float | None:
    for sensor in sorted((device / "hwmon").glob("hwmon*/temp1_input")):
        millidegrees = _int(sensor)
        if millidegrees is not None:
            return millidegrees / 1000.0
    return None


def read_card(card: Path) -> GpuInfo | None:
    """The GPU behind one ``card<N>`` entry, or None when it is not an AMD or Intel GPU."""
    device = card / "device"
    vendor_id = _int(device / "vendor", 16)
    if vendor_id not in VENDORS:
        return None
    vendor, label = VENDORS[vendor_id]
    event = _uevent(device)
    name = _read(device / "product_name")
    if not name:
        pci_id = event.get("PCI_ID", "").lower()
        driver = event.get("DRIVER")
        name = f"{label} GPU" + (f" [{pci_id}]" if pci_id else "") + (f" ({driver})" if driver else "")
    total = _int(device / "mem_info_vram_total")
    used = _int(device / "mem_info_vram_used")
    if total is None:
        total = _int(card / "lmem_total_bytes") or _int(device / "lmem_total_bytes")
    busy = _int(device / "gpu_busy_percent")
    return GpuInfo(
        vendor=vendor,
        index=0,
        name=name,
        vram_total=total or None,
        vram_used=used if total else None,
        temperature=_temperature(device),
        utilization=float(busy) if busy is not None else None,
    )


def read_gpus(root: Path | str = DEFAULT_ROOT) -> list[GpuInfo]:
    """Every AMD and Intel GPU under ``root`` (a ``/sys/class/drm``-like folder), numbered per vendor."""
    root = Path(root)
    if not root.is_dir():
        return []
    cards = sorted((p for p in root.iterdir() if _CARD.match(p.name)), key=lambda p: int(_CARD.match(p.name)[1]))
    found: list[GpuInfo] = []
    seen: set[Path] = set()
    for card in cards:
        device = (card / "device").resolve()
        if device in seen:
            continue
        seen.add(device)
        gpu = read_card(card)
        if gpu is not None:
            index = sum(1 for g in found if g.vendor == gpu.vendor)
            found.append(attrs.evolve(gpu, index=index))
    return found


class SysfsGpuVendor(GpuVendor):
    """AMD and Intel GPUs from sysfs: vendor, name and memory size; use and temperature where published."""

    name = "sysfs-gpu"
    distribution = "corral-sysfs-gpu"
    requires = ()
    root: ClassVar[Path] = DEFAULT_ROOT

    def __init__(self, root: Path | str | None = None) -> None:
        self._root = Path(root or os.environ.get("CORRAL_SYSFS_ROOT") or self.root)

    def probe(self) -> list[GpuInfo]:
        """The AMD and Intel GPUs on this machine; [] where sysfs has none (or no sysfs at all)."""
        return read_gpus(self._root)
