"""Kept for one release: the extension API moved to :mod:`corral.ext` (plugins import :mod:`corral.api`)."""

from __future__ import annotations

from corral.errors import Unsupported
from corral.ext.backend import backend_status
from corral.ext.categories import TASKS
from corral.ext.driver import Driver, LoadedModel, Progress, TorchDriver, drain
from corral.ext.exporter import Exporter
from corral.ext.gpu import GpuVendor
from corral.ext.source import Source
from corral.ext.torch import free_torch_memory, torch_acceleration, torch_device, torch_memory, torch_threads

__all__ = [
    "TASKS", "Driver", "Exporter", "GpuVendor", "LoadedModel", "Progress", "Source", "TorchDriver", "Unsupported",
    "backend_status", "drain", "free_torch_memory", "torch_acceleration", "torch_device", "torch_memory",
    "torch_threads",
]  # fmt: skip
