"""Corral plugin: NVIDIA GPUs through NVML (the ``pynvml`` module of ``nvidia-ml-py``).

Registering imports nothing but the vendor class; NVML is loaded only when the GPUs are probed.
"""

from corral import hookimpl

from corral_nvidia.vendor import NvidiaVendor


@hookimpl
def register_gpu_vendors(register):
    register(NvidiaVendor)


__all__ = ["NvidiaVendor"]
