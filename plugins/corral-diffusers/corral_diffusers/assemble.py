"""Build a diffusers pipeline from what the library record holds: a pipeline folder, a denoiser folder, or
a single-file checkpoint (``.safetensors``, ``.gguf``, ``.bin``/``.ckpt``), plus component files.

* A pipeline folder loads as it is (``from_pretrained``), attached components replacing its own parts.
* An all-in-one checkpoint (VAE and text encoders inside) loads with ``from_single_file``.
* A denoiser on its own (a UNet or transformer file or folder) is loaded first, then the pipeline is
  built around it from the config folder (:mod:`corral_diffusers.configs`): each attached component
  fills its part, parts the config folder holds weights for come from there, and a part found nowhere
  refuses the load, naming the component to attach.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Mapping

from corral.api import Incompatible
from corral.api import ComponentKind, Format, Model
from corral.api import components_in_file
from corral_diffusers.components import dtype_kw, load_component, load_denoiser
from corral_diffusers.configs import config_folder, main_shapes, read_index

VAE, CLIP_L, CLIP_G, T5XXL = ComponentKind.VAE, ComponentKind.CLIP_L, ComponentKind.CLIP_G, ComponentKind.T5XXL


def slots_for(pipeline: str) -> dict[ComponentKind, str]:
    """Which part of a ``pipeline`` class each component kind fills."""
    if pipeline.startswith("StableDiffusion3"):
        return {VAE: "vae", CLIP_L: "text_encoder", CLIP_G: "text_encoder_2", T5XXL: "text_encoder_3"}
    if pipeline.startswith("StableDiffusionXL"):
        return {VAE: "vae", CLIP_L: "text_encoder", CLIP_G: "text_encoder_2"}
    if pipeline.startswith("Flux"):
        return {VAE: "vae", CLIP_L: "text_encoder", T5XXL: "text_encoder_2"}
    if pipeline.startswith("Wan"):
        return {VAE: "vae", T5XXL: "text_encoder"}
    return {VAE: "vae", CLIP_L: "text_encoder"}


def build_pipeline(model: Model, config: str | None, dtype: Any) -> Any:
    """The pipeline for ``model``, on the CPU, in ``dtype``. Backend errors are left to the caller."""
    import diffusers

    path = Path(model.path)
    is_pipeline_folder = path.is_dir() and (path / "model_index.json").is_file()
    folder = path if is_pipeline_folder else config_folder(model, config, main_shapes(model))
    index = read_index(folder, model)
    pipeline_cls = getattr(diffusers, index["_class_name"], None)
    if pipeline_cls is None or not isinstance(pipeline_cls, type):
        raise Incompatible(f"{model.name}: {folder / 'model_index.json'} names pipeline {index['_class_name']!r}, "
                           f"which diffusers {diffusers.__version__} does not have; upgrade diffusers")
    slots = slots_of(model, slots_for(pipeline_cls.__name__), pipeline_cls.__name__)
    modules = {slots[c.kind]: load_component(model, c, folder, slots[c.kind], index, dtype) for c in model.components}
    if is_pipeline_folder:
        _require_parts(model, folder, index, pipeline_cls, modules, slots)
        return pipeline_cls.from_pretrained(str(folder), **dtype_kw(dtype), local_files_only=True, **modules)
    if model.format != Format.DIFFUSERS_DIR and components_in_file(path, model.format):
        # An all-in-one checkpoint: diffusers takes each part it carries from it.
        return pipeline_cls.from_single_file(str(path), config=str(folder), **dtype_kw(dtype),
                                             local_files_only=True, **modules)
    denoiser = "transformer" if _is_part(index.get("transformer")) else "unet"
    modules[denoiser] = load_denoiser(model, folder, denoiser, index, dtype)
    _require_parts(model, folder, index, pipeline_cls, modules, slots)
    return pipeline_cls.from_pretrained(str(folder), **dtype_kw(dtype), local_files_only=True, **modules)


def slots_of(model: Model, slots: Mapping[ComponentKind, str], pipeline: str) -> Mapping[ComponentKind, str]:
    """``slots``, after refusing a component the pipeline has no place for."""
    for component in model.components:
        if component.kind not in slots:
            raise Incompatible(f"{model.name}: a {component.kind} component has no place in a {pipeline}; "
                               f"detach it: corral component rm {model.name} {component.kind}")
    return slots


def _is_part(entry: Any) -> bool:
    return isinstance(entry, list) and len(entry) == 2 and bool(entry[0]) and bool(entry[1])


def _is_module(entry: Any) -> bool:
    """Whether a model_index entry names a torch module (weights), not a tokenizer or scheduler."""
    import torch

    library, name = entry
    try:
        cls = getattr(importlib.import_module(library), name, None)
    except ImportError:
        return False
    return isinstance(cls, type) and issubclass(cls, torch.nn.Module)


def _has_weights(folder: Path) -> bool:
    suffixes = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf")
    return folder.is_dir() and any(p.suffix in suffixes for p in folder.iterdir() if p.is_file())


def _require_parts(model: Model, folder: Path, index: Mapping[str, Any], pipeline_cls: type,
                   modules: dict[str, Any], slots: Mapping[ComponentKind, str]) -> None:
    """Refuse, naming every missing part, when a part with weights is neither loaded nor in ``folder``.

    Optional parts (image encoders, safety checkers) found nowhere are left out (``None``).
    """
    optional = set(getattr(pipeline_cls, "_optional_components", ()) or ())
    kind_of = {slot: kind for kind, slot in slots.items()}
    missing = []
    for name, entry in index.items():
        if name.startswith("_") or name in modules or not _is_part(entry) or not _is_module(entry):
            continue
        if _has_weights(folder / name):
            continue
        if name in optional:
            modules[name] = None
            continue
        missing.append(kind_of.get(name, name))
    if missing:
        attach = "; ".join(f"corral component add {model.name} {k} PATH" for k in missing
                           if isinstance(k, ComponentKind))
        names = ", ".join(str(k) if isinstance(k, ComponentKind) else f"its {k}" for k in missing)
        raise Incompatible(f"{model.name}: the pipeline needs {names}, found neither attached nor in {folder}"
                           + (f"; attach: {attach}" if attach else "; point the config setting at a complete "
                              f"pipeline folder: corral settings {model.name} --set config=DIR"))
