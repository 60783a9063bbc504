"""What llama.cpp was built with and runs on: its compute devices (ggml backends), their free memory, and
the CPU features it was compiled for.

llama-cpp-python does not wrap ggml's device API, so this calls ``ggml_backend_dev_*`` from the ggml
library it ships, through ctypes. Everything here imports llama_cpp, so it runs only for ``corral env``
and around loads, never at start-up.
"""

from __future__ import annotations

import ctypes
from typing import Any

from attrs import frozen

#: ggml_backend_dev_type: CPU, discrete GPU, integrated GPU, accelerator (BLAS, AMX) used with the CPU.
_DEVICE_TYPES = {0: "cpu", 1: "gpu", 2: "igpu", 3: "accel"}


@frozen
class Device:
    """One ggml compute device: ``name`` like CPU, CUDA0, Vulkan0, Metal; memory in bytes (None if unknown)."""

    name: str
    description: str
    type: str
    free: int | None
    total: int | None


_lib: Any = None


def _ggml() -> Any:
    global _lib
    if _lib is None:
        import llama_cpp
        from llama_cpp._ggml import libggml as lib

        llama_cpp.llama_backend_init()  # registers the backends; idempotent
        lib.ggml_backend_dev_count.restype = ctypes.c_size_t
        lib.ggml_backend_dev_get.restype = ctypes.c_void_p
        lib.ggml_backend_dev_get.argtypes = [ctypes.c_size_t]
        for fn in (lib.ggml_backend_dev_name, lib.ggml_backend_dev_description):
            fn.restype = ctypes.c_char_p
            fn.argtypes = [ctypes.c_void_p]
        lib.ggml_backend_dev_type.restype = ctypes.c_int
        lib.ggml_backend_dev_type.argtypes = [ctypes.c_void_p]
        lib.ggml_backend_dev_memory.restype = None
        lib.ggml_backend_dev_memory.argtypes = [
            ctypes.c_void_p,
            ctypes.POINTER(ctypes.c_size_t),
            ctypes.POINTER(ctypes.c_size_t),
        ]
        _lib = lib
    return _lib


def devices() -> list[Device]:
    """Every device the llama.cpp build can use here; empty when the ggml device API is unavailable."""
    try:
        lib = _ggml()
    except (ImportError, AttributeError, OSError):
        return []
    out = []
    for i in range(lib.ggml_backend_dev_count()):
        dev = lib.ggml_backend_dev_get(i)
        free, total = ctypes.c_size_t(), ctypes.c_size_t()
        lib.ggml_backend_dev_memory(dev, ctypes.byref(free), ctypes.byref(total))
        out.append(
            Device(
                name=(lib.ggml_backend_dev_name(dev) or b"?").decode(errors="replace"),
                description=(lib.ggml_backend_dev_description(dev) or b"").decode(errors="replace"),
                type=_DEVICE_TYPES.get(lib.ggml_backend_dev_type(dev), "other"),
                free=free.value or None,
                total=total.value or None,
            )
        )
    return out


def gpu_free() -> dict[str, int]:
    """Free memory per discrete GPU (device name -> bytes); empty on a CPU-only build or machine."""
    return {d.name: d.free for d in devices() if d.type == "gpu" and d.free is not None}


def cpu_features() -> list[str]:
    """The CPU instruction sets and options llama.cpp was built with and found (AVX2, AVX512, OPENMP, ...)."""
    import llama_cpp

    info = llama_cpp.llama_print_system_info().decode(errors="replace")
    features = []
    for part in info.split("|"):
        name, _, value = part.partition("=")
        name = name.strip().split(":")[-1].strip()
        if name and value.strip() == "1":
            features.append(name)
    return features


def acceleration() -> tuple[str, ...]:
    """A short account for ``corral env``: GPU offload support, each device, then CPU features."""
    import llama_cpp

    offload = "gpu-offload" if llama_cpp.llama_supports_gpu_offload() else "cpu-only build"
    found = [f"{d.type}:{d.name}" + (f" ({d.description})" if d.description else "") for d in devices()]
    return (offload, *found, *(f"cpu:{f}" for f in cpu_features()))
