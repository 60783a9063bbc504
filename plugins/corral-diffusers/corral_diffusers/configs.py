"""Where a single-file model's pipeline configuration comes from, offline.

A denoiser file holds weights only. The rest of its pipeline (``model_index.json``, each part's
``config.json``, the scheduler, the tokenizers) comes from a *config folder*: the ``config`` setting (a
local diffusers folder, or a repo id in the local Hugging Face cache), or else the repository diffusers
names for the checkpoint's family, looked up in the local cache only. Nothing is downloaded.
"""

from __future__ import annotations

import json
import os
import re
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from corral.api import CorralError, DetectionError, NotFound
from corral.api import Format, Model

#: Repositories whose configs and tokenizers fit each detected family, when diffusers cannot tell.
FAMILY_REPOS = {
    "stable-diffusion": "stable-diffusion-v1-5/stable-diffusion-v1-5",
    "sdxl": "stabilityai/stable-diffusion-xl-base-1.0",
    "unet": "stabilityai/stable-diffusion-xl-base-1.0",
    "sd3": "stabilityai/stable-diffusion-3.5-medium",
    "flux": "black-forest-labs/FLUX.1-dev",
    "wan": "Wan-AI/Wan2.1-T2V-1.3B-Diffusers",
}
_SD15 = "stable-diffusion-v1-5/stable-diffusion-v1-5"
_REPO_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
_MAX_INDEX = 1024 * 1024

#: Loads flip process-wide switches (offline mode, progress bars); one load at a time keeps them consistent.
_LOAD_LOCK = threading.Lock()


@contextmanager
def offline_and_quiet() -> Iterator[None]:
    """Load with the Hugging Face hub offline (``HF_HUB_OFFLINE=1``; files are local, the network is never
    used), without the backends' progress bars and warnings on stderr.

    Both libraries warn about their own choices while loading (optional image processors they cannot
    build, dtype casts, deprecations): nothing a user can act on. Missing weights are checked here instead.
    """
    import huggingface_hub.constants as hub_constants
    from transformers.utils import logging as hf_logging

    with _LOAD_LOCK:
        saved_env = os.environ.get("HF_HUB_OFFLINE")
        saved_flag = hub_constants.HF_HUB_OFFLINE
        hf_state = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
        os.environ["HF_HUB_OFFLINE"] = "1"
        hub_constants.HF_HUB_OFFLINE = True  # what huggingface_hub.is_offline_mode() answers
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        diffusers_logging = diffusers_state = None
        try:
            from diffusers.utils import logging as diffusers_logging  # its first import warns too

            diffusers_state = diffusers_logging.get_verbosity(), diffusers_logging.is_progress_bar_enabled()
            diffusers_logging.set_verbosity_error()
            diffusers_logging.disable_progress_bar()
            yield
        finally:
            if diffusers_state is not None:
                diffusers_logging.set_verbosity(diffusers_state[0])
                if diffusers_state[1]:
                    diffusers_logging.enable_progress_bar()
            hf_logging.set_verbosity(hf_state[0])
            if hf_state[1]:
                hf_logging.enable_progress_bar()
            hub_constants.HF_HUB_OFFLINE = saved_flag
            if saved_env is None:
                os.environ.pop("HF_HUB_OFFLINE", None)
            else:
                os.environ["HF_HUB_OFFLINE"] = saved_env


def read_index(folder: Path, model: Model) -> dict[str, Any]:
    """``model_index.json`` of a pipeline folder (what parts it has, which classes load them)."""
    path = folder / "model_index.json"
    try:
        if path.stat().st_size > _MAX_INDEX:
            raise DetectionError(f"{model.name}: {path} is too large to be a model_index.json")
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NotFound(f"{model.name}: {path} is missing; the pipeline folder is incomplete "
                       "(re-download it, or point the config setting at a complete one)") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DetectionError(f"{model.name}: {path} cannot be read ({exc}); re-download the pipeline") from None
    if not isinstance(data, dict) or not isinstance(data.get("_class_name"), str):
        raise DetectionError(f"{model.name}: {path} names no pipeline class (_class_name); re-download it")
    return data


def config_folder(model: Model, config: str | None, shapes: dict[str, tuple[int, ...]] | None) -> Path:
    """The folder that holds the configs and tokenizers of ``model``'s pipeline.

    :param config: the ``config`` setting (a folder, or a repo id in the local cache), or None.
    :param shapes: the main file's tensor names and shapes, for diffusers' guess of the family's repo.
    """
    if config:
        folder = Path(config).expanduser()
        if folder.is_dir():
            if not (folder / "model_index.json").is_file():
                raise DetectionError(f"{model.name}: config folder {folder} has no model_index.json; point the "
                                     "config setting at a diffusers pipeline folder")
            return folder
        if not _REPO_ID.match(config):
            raise NotFound(f"{model.name}: config {config!r} is neither a folder nor a repo id (org/name); fix it: "
                           f"corral settings {model.name} --set config=DIR")
        return _cached_repo(model, config, how="the config setting names")
    repo = default_repo(model, shapes)
    return _cached_repo(model, repo, how="its family's configuration is")


def default_repo(model: Model, shapes: dict[str, tuple[int, ...]] | None) -> str:
    """The repository whose configs fit ``model``: diffusers' own guess from the checkpoint's tensors,
    unless that is its fallback (SD 1.5) and the detected family says otherwise."""
    family = model.facts.architecture or ""
    guess = None
    if shapes:
        try:
            import torch
            from diffusers.loaders.single_file_utils import fetch_diffusers_config

            with torch.device("meta"):
                meta = {name: torch.empty(shape) for name, shape in shapes.items()}
            guess = fetch_diffusers_config(meta)["pretrained_model_name_or_path"]
        except Exception:  # an unknown layout: the family decides
            guess = None
    if guess and not (guess == _SD15 and family in FAMILY_REPOS and family != "stable-diffusion"):
        return guess
    if family in FAMILY_REPOS:
        return FAMILY_REPOS[family]
    raise CorralError(f"{model.name}: cannot tell which pipeline this {model.format} file belongs to; point the "
                      f"config setting at a diffusers folder of its family: corral settings {model.name} "
                      "--set config=DIR")


def _cached_repo(model: Model, repo: str, *, how: str) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        folder = Path(snapshot_download(repo, local_files_only=True))
    except (LocalEntryNotFoundError, OSError, ValueError):
        folder = None
    if folder is None or not (folder / "model_index.json").is_file():
        raise NotFound(
            f"{model.name}: {how} in {repo}, which is not in the local Hugging Face cache. Fetch its configs "
            f"and tokenizers once (no weights needed), e.g. hf download {repo} --include '*.json' '*.txt' "
            f"'*.model', or point at a local pipeline folder: corral settings {model.name} --set config=DIR")
    return folder


def main_shapes(model: Model) -> dict[str, tuple[int, ...]] | None:
    """Tensor names and shapes of a single-file model, from its header (nothing is loaded)."""
    path = Path(model.path)
    if model.format == Format.SAFETENSORS:
        from corral.api import shapes_of

        return shapes_of(path)
    if model.format == Format.GGUF:
        from corral.api import read_gguf_header

        # GGUF lists dimensions innermost first; torch's order is the reverse.
        return {t.name: tuple(reversed(t.shape)) for t in read_gguf_header(path).tensors}
    return None
