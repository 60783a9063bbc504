"""What embedding and rerank loads share: settings read into options, the folder handed to
sentence-transformers, offline loading, device and precision, measured memory, and backend errors
turned into Corral errors.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

import attrs

from corral.api import CorralError, DetectionError, InsufficientMemory, InvalidSetting, NotFound
from corral.api import Format, Model
from corral.api import torch_device
from corral.api import read_settings
from corral_sentence_transformers.driver import SETTINGS

#: Weight files that a folder beside a lone safetensors file may hold; none is linked into the staged folder.
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".onnx", ".gguf", ".h5", ".msgpack")

#: Loads flip process-wide switches (offline mode, progress bars); one load at a time keeps them consistent.
_LOAD_LOCK = threading.Lock()


@attrs.frozen
class Options:
    """A model's load settings, checked and typed."""

    device: str | None = None
    dtype: str | None = None
    batch_size: int = 32
    normalize: bool = False
    max_seq_length: int | None = None
    trust_remote_code: bool = False

    @classmethod
    def read(cls, model: Model, settings: Mapping[str, Any]) -> "Options":
        """Typed options from saved settings plus overrides (HTTP callers may send strings)."""
        values = read_settings(SETTINGS, settings, model.name)
        return cls(**values)


def check_files(model: Model) -> None:
    """Refuse a model whose files vanished since it was imported (before the backend trips over it)."""
    for path in (model.path, *model.paths):
        if not Path(path).exists():
            raise NotFound(f"{model.name}: {path} is missing (the model's files changed since import); "
                           f"restore it, or remove the model and import it again")


@contextmanager
def model_folder(model: Model) -> Iterator[Path]:
    """The folder sentence-transformers loads ``model`` from.

    A model folder is used as it is. A lone safetensors file needs its config and tokenizer: they are
    taken from the file's own folder; when the file is not the ``model.safetensors`` that folder would
    load anyway, a temporary folder of links puts it in that place, so exactly the imported weights load.
    """
    path = Path(model.path)
    if model.format != Format.SAFETENSORS:
        yield path
        return
    folder = path.parent
    if not (folder / "config.json").is_file():
        raise DetectionError(
            f"{model.name}: {path} is a lone safetensors file, with no config.json or tokenizer beside it; "
            "put it in its model folder (config.json, tokenizer files) and import that folder")
    shards = [p for p in model.paths if Path(p).suffix == ".safetensors"]
    if path.name == "model.safetensors" or len(shards) > 1:  # shards load through the folder's index
        yield folder
        return
    with tempfile.TemporaryDirectory(prefix="corral-st-") as staged:
        staged_dir = Path(staged)
        try:
            for entry in folder.iterdir():
                if entry.is_file() and (entry.suffix in _WEIGHT_SUFFIXES or entry.name.endswith(".index.json")):
                    continue
                os.symlink(entry, staged_dir / entry.name, target_is_directory=entry.is_dir())
            os.symlink(path, staged_dir / "model.safetensors")
        except OSError as exc:
            raise CorralError(f"{model.name}: cannot stage {path} beside its config in {staged_dir} ({exc}); "
                              f"import the folder {folder} instead") from None
        yield staged_dir


@contextmanager
def offline_and_quiet() -> Iterator[None]:
    """Load with the Hugging Face hub offline (the files are local; the network is never used) and
    without the backend's progress bars on stderr."""
    # Imported first, so the flag it computes once from the environment is the user's, and comes back after.
    import huggingface_hub.constants as hub_constants
    from transformers.utils import logging as hf_logging

    with _LOAD_LOCK:
        saved_env = os.environ.get("HF_HUB_OFFLINE")
        saved_flag = hub_constants.HF_HUB_OFFLINE
        os.environ["HF_HUB_OFFLINE"] = "1"
        hub_constants.HF_HUB_OFFLINE = True  # what huggingface_hub.is_offline_mode() answers
        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        try:
            yield
        finally:
            hub_constants.HF_HUB_OFFLINE = saved_flag
            if saved_env is None:
                os.environ.pop("HF_HUB_OFFLINE", None)
            else:
                os.environ["HF_HUB_OFFLINE"] = saved_env
            if bars:
                hf_logging.enable_progress_bar()


def resolve_device(model: Model, device: str | None) -> str | None:
    """The torch device to load on; ``None`` lets sentence-transformers pick (cuda, then mps, then cpu)."""
    return None if device is None else torch_device(model.name, device)


def torch_dtype(dtype: str | None) -> Any:
    """The ``dtype`` handed to transformers: float32 unless asked otherwise (transformers 5 would
    otherwise follow config.json, often float16, which is slow or unsupported on a CPU)."""
    import torch

    if dtype == "auto":
        return "auto"
    return {"float16": torch.float16, "bfloat16": torch.bfloat16}.get(dtype or "float32", torch.float32)


def config_of(folder: Path) -> dict:
    """config.json of a model folder (already read and bounded by detection at import)."""
    try:
        data = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DetectionError(f"{folder / 'config.json'}: cannot be read ({exc}); re-download the model") from None
    return data if isinstance(data, dict) else {}


def check_max_seq_length(model: Model, options: Options, positions: int | None) -> None:
    """Refuse a ``max_seq_length`` longer than the position table: those tokens would index past it."""
    if options.max_seq_length and positions and options.max_seq_length > positions:
        raise InvalidSetting(f"{model.name}: max_seq_length {options.max_seq_length} is longer than the model's "
                             f"{positions} positions; set at most {positions}: "
                             f"corral settings {model.name} --set max_seq_length={positions}")


def load_error(model: Model, folder: Path, exc: BaseException) -> CorralError:
    """One clear line for a backend failure while loading ``folder``."""
    text = " ".join(str(exc).split())
    if "trust_remote_code" in text or "custom code" in text:
        return CorralError(
            f"{model.name}: {folder} needs its own Python code to load (config.json auto_map or custom "
            f"modules), and running it is off; if you trust that code: "
            f"corral settings {model.name} --set trust_remote_code=true")
    if type(exc).__name__ == "OutOfMemoryError" or isinstance(exc, MemoryError):
        return InsufficientMemory(f"{model.name}: out of memory while loading {folder}; try dtype=float16 or "
                                  f"device=cpu: corral settings {model.name} --set dtype=float16")
    if isinstance(exc, OSError):
        return DetectionError(f"{model.name}: {folder} cannot be loaded ({text[:300]}); "
                              "re-download the model or import a complete folder")
    return CorralError(f"{model.name}: sentence-transformers could not load {folder} "
                       f"({type(exc).__name__}: {text[:300]})")
