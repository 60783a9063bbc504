"""Load one part of a pipeline from a file of its own: the denoiser (UNet or transformer), a VAE, a text
encoder. Each part's configuration comes from the config folder's subfolder of the same name.

diffusers parts load with ``from_single_file``, which also converts the original (LDM, BFL, Wan) layouts
to diffusers'; GGUF denoisers load quantized (diffusers' GGUF support). transformers text encoders load
from a staged folder (the part's ``config.json`` beside a link to the file), and must be in Hugging Face
layout (``text_model.*`` for CLIP, ``encoder.block.*`` + ``shared`` for T5).
"""

from __future__ import annotations

import importlib
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

from corral.api import CorralError, Incompatible, NotFound
from corral.api import Component, Format, Model

#: Missing weights a text encoder may lack without harm (buffers transformers rebuilds itself).
_HARMLESS_MISSING = ("position_ids",)


def _class(model: Model, index: Mapping[str, Any], slot: str, folder: Path) -> tuple[str, type]:
    entry = index.get(slot)
    if not (isinstance(entry, list) and len(entry) == 2 and entry[0] and entry[1]):
        raise Incompatible(f"{model.name}: the pipeline in {folder} has no {slot}")
    library, name = entry
    try:
        cls = getattr(importlib.import_module(library), name, None)
    except ImportError:
        cls = None
    if not isinstance(cls, type):
        raise Incompatible(f"{model.name}: {folder / 'model_index.json'} names {library}.{name} for its {slot}, "
                           f"which is not installed here; upgrade {library}")
    return library, cls


def dtype_kw(dtype: Any) -> dict[str, Any]:
    """The weights dtype as diffusers takes it: ``dtype`` since it deprecated ``torch_dtype``."""
    from diffusers.utils import deprecation_utils

    return {"dtype": dtype} if hasattr(deprecation_utils, "_resolve_dtype") else {"torch_dtype": dtype}


def _single_file_loadable(cls: type) -> bool:
    from diffusers.loaders.single_file_model import _get_single_file_loadable_mapping_class

    return hasattr(cls, "from_single_file") and _get_single_file_loadable_mapping_class(cls) is not None


def load_denoiser(model: Model, folder: Path, slot: str, index: Mapping[str, Any], dtype: Any) -> Any:
    """The UNet or transformer from ``model``'s own file (or folder), configured from ``folder/slot``."""
    _library, cls = _class(model, index, slot, folder)
    path = Path(model.path)
    if not path.exists():
        raise NotFound(f"{model.name}: {path} is missing; restore it, or remove the model and import it again")
    if path.is_dir():
        return cls.from_pretrained(str(path), **dtype_kw(dtype), local_files_only=True)
    extra: dict[str, Any] = {}
    if model.format == Format.GGUF:
        from diffusers import GGUFQuantizationConfig

        extra["quantization_config"] = GGUFQuantizationConfig(compute_dtype=dtype)
    if not _single_file_loadable(cls):
        if extra:
            raise Incompatible(f"{model.name}: diffusers loads no GGUF {cls.__name__}; use a .safetensors file")
        with _staged(folder / slot, path, "diffusion_pytorch_model") as staged:
            return cls.from_pretrained(str(staged), **dtype_kw(dtype), local_files_only=True)
    source: Any = str(path)
    if _bare_ldm_unet(path):
        from safetensors.torch import load_file

        # diffusers converts the original UNet layout only under the all-in-one checkpoint's prefix.
        source = {_LDM_UNET_PREFIX + k: v for k, v in load_file(str(path)).items()}
    return cls.from_single_file(source, config=str(folder), subfolder=slot, **dtype_kw(dtype),
                                local_files_only=True, **extra)


_LDM_UNET_PREFIX = "model.diffusion_model."


def _bare_ldm_unet(path: Path) -> bool:
    """A .safetensors UNet in the original LDM layout without the all-in-one checkpoint's prefix."""
    if path.suffix.lower() != ".safetensors":
        return False
    from corral.api import read_safetensors_header as read_header

    names = read_header(path).tensors
    return any(n.startswith("input_blocks.") for n in names) and not any(n.startswith(_LDM_UNET_PREFIX) for n in names)


def load_component(model: Model, component: Component, folder: Path, slot: str, index: Mapping[str, Any],
                   dtype: Any) -> Any:
    """An attached component (a file or a folder) loaded as the pipeline's ``slot`` part."""
    library, cls = _class(model, index, slot, folder)
    path = Path(component.path)
    if not path.exists():
        raise NotFound(f"{model.name}: its {component.kind} {path} is missing; restore it, or attach another: "
                       f"corral component add {model.name} {component.kind} PATH")
    if library == "diffusers":
        if path.is_dir():
            return cls.from_pretrained(str(path), **dtype_kw(dtype), local_files_only=True)
        if _single_file_loadable(cls):
            return cls.from_single_file(str(path), config=str(folder), subfolder=slot, **dtype_kw(dtype),
                                        local_files_only=True)
        with _staged(folder / slot, path, "diffusion_pytorch_model") as staged:
            return cls.from_pretrained(str(staged), **dtype_kw(dtype), local_files_only=True)
    if path.is_dir():
        loaded, info = cls.from_pretrained(str(path), dtype=dtype, output_loading_info=True)
    else:
        with _staged(folder / slot, path, "model" if path.suffix == ".safetensors" else "pytorch_model") as staged:
            loaded, info = cls.from_pretrained(str(staged), dtype=dtype, output_loading_info=True)
    missing = [k for k in info.get("missing_keys", ()) if not k.endswith(_HARMLESS_MISSING)]
    if missing:
        shown = ", ".join(sorted(missing)[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise Incompatible(f"{model.name}: its {component.kind} {path.name} lacks {len(missing)} weight(s) a "
                           f"{cls.__name__} needs ({shown}); it must be a {component.kind} in Hugging Face layout "
                           f"that fits {folder / slot / 'config.json'}")
    return loaded


@contextmanager
def _staged(config_dir: Path, weights: Path, stem: str) -> Iterator[Path]:
    """A temporary folder with ``config_dir``'s config beside a link to ``weights`` under the name the
    library loads (``model.safetensors``, ``diffusion_pytorch_model.safetensors``, ...)."""
    config = config_dir / "config.json"
    if not config.is_file():
        raise NotFound(f"{config} is missing: the config folder has no configuration for {config_dir.name}")
    suffix = ".safetensors" if weights.suffix == ".safetensors" else ".bin"
    with tempfile.TemporaryDirectory(prefix="corral-diffusers-") as tmp:
        staged = Path(tmp)
        try:
            os.symlink(config.resolve(), staged / "config.json")
            os.symlink(weights.resolve(), staged / f"{stem}{suffix}")
        except OSError as exc:
            raise CorralError(f"cannot stage {weights} beside its config in {staged} ({exc})") from None
        yield staged
