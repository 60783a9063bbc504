"""Image-model templates: how a main model file and its separate component files make one pipeline.

A diffusers folder carries every part of its pipeline. A single-file denoiser (a UNet or a transformer as
``.safetensors``, ``.gguf`` or ``.bin``) usually does not: its VAE and text encoders live in files of their
own. A template names the parts its kind of pipeline needs, so an import can check they are all there,
and a load can refuse, listing what is missing, after a component was removed.

The template is kept in the model's facts (``facts.extra["template"]``), with the parts the main file
carries itself (``facts.extra["bundled"]``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Mapping

import attrs

from corral.errors import InvalidSetting
from corral.records import ComponentKind, Detection, Format, Model

VAE, CLIP_L, CLIP_G, T5XXL = ComponentKind.VAE, ComponentKind.CLIP_L, ComponentKind.CLIP_G, ComponentKind.T5XXL

#: What an image model can be asked to do. ``video`` is the same as ``text-to-video``.
CAPABILITY_TAGS = ("text-to-image", "image-to-image", "video", "text-to-video", "image-to-video")


@attrs.frozen
class Template:
    """One kind of image pipeline assembled from separate files."""

    name: str
    label: str
    #: Components the pipeline cannot run without.
    components: tuple[ComponentKind, ...]
    #: Detected architectures (``facts.architecture``) its main model may have; the first is the one a
    #: main model whose detection could not tell is recorded with.
    families: tuple[str, ...]
    #: Capability tags a model imported with it gets when none are given.
    tags: tuple[str, ...]
    #: Pipeline folder name -> the component kind it holds (how a diffusers folder bundles them).
    slots: Mapping[str, ComponentKind] = attrs.field(factory=dict)


TEMPLATES: Mapping[str, Template] = {
    t.name: t
    for t in (
        Template("sd_official", "Stable Diffusion XL-style (UNet + VAE + CLIP-L + CLIP-G)", (VAE, CLIP_L, CLIP_G),
                 ("sdxl", "stable-diffusion", "unet"), ("text-to-image", "image-to-image"),
                 {"vae": VAE, "text_encoder": CLIP_L, "text_encoder_2": CLIP_G}),
        Template("flux", "FLUX (transformer + VAE + CLIP-L + T5-XXL)", (VAE, CLIP_L, T5XXL),
                 ("flux",), ("text-to-image", "image-to-image"),
                 {"vae": VAE, "text_encoder": CLIP_L, "text_encoder_2": T5XXL}),
        Template("video", "Wan video (transformer + VAE; its UMT5 text encoder as t5xxl)", (VAE,),
                 ("wan",), ("video",), {"vae": VAE, "text_encoder": T5XXL}),
    )
}

#: Tensor-name prefixes under which single-file checkpoints carry their own parts.
_BUNDLED_PREFIXES: tuple[tuple[str, ComponentKind], ...] = (
    ("first_stage_model.", VAE),
    ("vae.", VAE),
    ("cond_stage_model.", CLIP_L),
    ("conditioner.embedders.0.", CLIP_L),
    ("conditioner.embedders.1.", CLIP_G),
    ("text_encoders.clip_l.", CLIP_L),
    ("text_encoders.clip_g.", CLIP_G),
    ("text_encoders.t5xxl.", T5XXL),
)


def get_template(name: str) -> Template:
    """The template called ``name``; an unknown name lists the known ones."""
    try:
        return TEMPLATES[name]
    except KeyError:
        raise InvalidSetting(f"unknown template {name!r} (known: {', '.join(TEMPLATES)})") from None


def template_for_family(family: str | None) -> Template | None:
    """The template whose main models have this architecture, if one has."""
    return next((t for t in TEMPLATES.values() if family in t.families), None)


def model_template(model: Model) -> Template | None:
    """The template ``model`` was imported with (None: none)."""
    name = model.facts.extra.get("template")
    return TEMPLATES.get(name) if isinstance(name, str) else None


def bundled_components(detection: Detection, template: Template) -> tuple[ComponentKind, ...]:
    """The template's parts that the main model carries itself: a diffusers folder's own VAE and text
    encoders, or the VAE and text encoders an all-in-one checkpoint holds under its LDM prefixes."""
    if detection.format == Format.DIFFUSERS_DIR:
        folders = detection.facts.extra.get("components") or ()
        found = {kind for folder, kind in template.slots.items() if folder in folders}
        return tuple(k for k in ComponentKind if k in found)
    return components_in_file(detection.path, detection.format)


def components_in_file(path: Path, format: Format) -> tuple[ComponentKind, ...]:
    """The VAE and text encoders a single-file checkpoint carries under their LDM prefixes (from its
    header, or a pickle's opcode scan: nothing is loaded)."""
    names = _tensor_names(Path(path), format)
    found = {kind for prefix, kind in _BUNDLED_PREFIXES if any(n.startswith(prefix) for n in names)}
    return tuple(k for k in ComponentKind if k in found)


def _tensor_names(path: Path, format: Format) -> Iterable[str]:
    if not path.is_file():
        return ()
    if format == Format.SAFETENSORS:
        from corral.detect.safetensors import read_header

        return read_header(path).tensors
    if format == Format.PYTORCH_PICKLE:
        from corral.detect.pickle_scan import scan_pickle

        return scan_pickle(path).keys
    return ()


def missing_components(model: Model) -> list[ComponentKind]:
    """The components ``model``'s template needs that it neither carries nor has attached."""
    template = model_template(model)
    if template is None:
        return []
    bundled = {k for k in ComponentKind if k.value in (model.facts.extra.get("bundled") or ())}
    have = {c.kind for c in model.components} | bundled
    return [k for k in template.components if k not in have]


def check_tags(tags: Iterable[str], model_name: str) -> tuple[str, ...]:
    """Capability tags, lower-cased, each once, each one Corral knows for image models."""
    out: list[str] = []
    for tag in tags:
        tag = tag.strip().lower()
        if tag not in CAPABILITY_TAGS:
            raise InvalidSetting(f"{model_name}: unknown capability {tag!r} (known: {', '.join(CAPABILITY_TAGS)})")
        if tag not in out:
            out.append(tag)
    return tuple(out)
