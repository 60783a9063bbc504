"""Helpers for torch-based drivers. Each imports torch inside the function: call them while loading or
running a model (or from ``Driver.check()``), never at start-up."""

from __future__ import annotations

from typing import Any, Mapping

from corral.errors import InvalidSetting


def torch_acceleration() -> tuple[str, ...]:
    """What torch can run on here: CUDA GPUs by name, Apple's MPS, the CPU.

    Imports torch: call it from ``Driver.check()`` (``corral env``), never at start-up.
    """
    import torch

    found = []
    if torch.cuda.is_available():
        names = {torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())}
        found.append("cuda: " + ", ".join(sorted(names)))
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("mps")
    found.append("cpu")
    return tuple(found)


def torch_device(model_name: str, device: str | None) -> str:
    """The torch device to run on: the asked one after checking it exists here, else cuda, mps or cpu.

    Imports torch: call it while loading.
    """
    import torch

    mps = getattr(torch.backends, "mps", None)
    has_mps = mps is not None and mps.is_available()
    if device is None:
        return "cuda" if torch.cuda.is_available() else "mps" if has_mps else "cpu"
    kind, _, index = device.partition(":")
    use_cpu = f"use the CPU: corral settings {model_name} --set device=cpu"
    if kind == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise InvalidSetting(
                f"{model_name}: device {device} asked for, but torch {torch.__version__} sees no CUDA GPU; {use_cpu}"
            )
        if index and (not index.isdigit() or int(index) >= count):
            raise InvalidSetting(
                f"{model_name}: device {device} does not exist ({count} CUDA GPU(s): cuda:0..cuda:{count - 1})"
            )
    if kind == "mps" and not has_mps:
        raise InvalidSetting(f"{model_name}: device mps asked for, but this torch has no usable MPS; {use_cpu}")
    if kind in ("cpu", "mps") and index:
        raise InvalidSetting(f"{model_name}: device {device}: {kind} takes no index; use device={kind}")
    return device


def torch_threads(settings: Mapping[str, Any]) -> None:
    """Apply the ``threads`` setting (0: torch's default) to torch's CPU thread pool. The pool belongs to
    the process: with several torch models loaded, the last load's setting holds for all of them."""
    threads = int(settings.get("threads") or 0)
    if threads > 0:
        import torch

        torch.set_num_threads(threads)


def torch_memory(*modules: Any) -> dict[str, int]:
    """Bytes the weights and buffers of torch ``modules`` take on the host (``ram``) and on accelerators
    (``vram``); a tensor shared between modules counts once, offload placeholders on "meta" not at all."""
    ram = vram = 0
    seen: set[int] = set()
    for module in modules:
        for tensor in [*module.parameters(), *module.buffers()]:
            if id(tensor) in seen or tensor.device.type == "meta":
                continue
            seen.add(id(tensor))
            size = tensor.numel() * tensor.element_size()
            if tensor.device.type == "cpu":
                ram += size
            else:
                vram += size
    return {"ram": ram, "vram": vram}


def free_torch_memory() -> None:
    """Give a dropped model's memory back now rather than at the next garbage collection (and the CUDA
    allocator's cache back to the GPU, when torch has touched one)."""
    import gc
    import sys

    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        torch.cuda.empty_cache()
