"""The core's own detection, registered as an ordinary plugin that runs after every installed one."""

from __future__ import annotations

from typing import TYPE_CHECKING

from corral import hookimpl

if TYPE_CHECKING:
    from pathlib import Path

    from corral.records import Detection, Model


@hookimpl(trylast=True)
def detect_model(path: Path) -> Detection | None:
    """Detect by content (GGUF, safetensors, PyTorch checkpoints, ONNX, HF/diffusers/Kokoro dirs).

    Raises :class:`corral.errors.DetectionError` for anything it does not recognise, so it never
    answers ``None``: it is the last detector asked.
    """
    from corral.detect import detect_path

    return detect_path(path)


@hookimpl(trylast=True)
def check_lora(base: Model, lora: Detection) -> bool | None:
    """The core's LoRA check (architecture and tensor shapes); raises ``Incompatible`` on a mismatch."""
    from corral.detect.lora_check import check_lora_fits

    check_lora_fits(base, lora)
    return True
