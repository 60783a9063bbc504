"""Pickled checkpoints (``pytorch_model.bin``, ``.pt``, ``.pth``): read only through torch's weights-only
unpickler, which rebuilds tensors and plain containers and refuses every other import, so a hostile
file's payload never runs.

transformers and PEFT pass ``weights_only=True`` themselves (transformers refuses ``.bin`` files outright
with a torch older than 2.6, whose weights-only loader had known escapes); :func:`require_safe_torch`
makes the same check before Corral reads a pickle itself, and a model imported with ``--allow-unsafe``
is refused before any of its files is opened.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from corral.api import UnsafeFile
from corral.api import Model

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")
#: The first torch whose weights-only loader transformers trusts (CVE-2025-32434 affects older ones).
SAFE_TORCH = (2, 6)


def require_safe_torch(what: str) -> None:
    """Refuse to read a pickle with a torch whose weights-only loader is not trusted."""
    import torch

    version = tuple(int("".join(c for c in part if c.isdigit()) or 0) for part in torch.__version__.split(".")[:2])
    if version < SAFE_TORCH:
        raise UnsafeFile(
            f"{what}: pickled weights are read only with torch 2.6 or newer (this is {torch.__version__}); "
            "upgrade torch, or use the model's safetensors files"
        )


def refuse_unsafe(model: Model) -> None:
    """A record whose pickles import more than tensors (imported with ``--allow-unsafe``) never loads."""
    if model.unsafe:
        raise UnsafeFile(
            f"{model.name}: its weights are an unsafe pickle ({model.unsafe}); loading them could run code, "
            "and torch's weights-only loader refuses them anyway. Use a safetensors copy of the model, or "
            f"remove it: corral rm {model.name}"
        )


def load_weights_only(path: Path, *, what: str) -> dict[str, Any]:
    """The state dict in the pickle at ``path``, on the CPU, through ``torch.load(weights_only=True)``."""
    import pickle

    import torch

    require_safe_torch(str(path))
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True, mmap=_is_zip(path))
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "refused"
        raise UnsafeFile(
            f"{path}: {what} is a pickle that holds more than tensors, and torch's weights-only loader refused "
            f"it ({first}); it was not run. Use a safetensors copy instead"
        ) from None
    except (RuntimeError, OSError, EOFError, ValueError) as exc:
        from corral.api import DetectionError

        raise DetectionError(f"{path}: torch cannot read this checkpoint ({exc}); re-download it") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]  # Lightning-style checkpoints wrap the weights
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        from corral.api import DetectionError

        raise DetectionError(f"{path}: {what} is not a state dict of tensors")
    return state


def _is_zip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"PK\x03\x04"
