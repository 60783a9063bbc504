"""Corral plugin: AMD and Intel GPUs read from Linux sysfs (``/sys/class/drm/card*/device``).

No library and no driver API: only the files the kernel's amdgpu, i915 and xe drivers publish.
"""

from corral import hookimpl

from corral_sysfs_gpu.sysfs import SysfsGpuVendor, read_gpus


@hookimpl
def register_gpu_vendors(register):
    register(SysfsGpuVendor)


__all__ = ["SysfsGpuVendor", "read_gpus"]
