"""Image models assembled from separate files with a template: sd_official (UNet + VAE + CLIP-L + CLIP-G),
flux (transformer + VAE + CLIP-L + T5-XXL, also as a GGUF), and the errors around them."""

from __future__ import annotations

import json

import shutil

import pytest

from corral.api import Incompatible, NotFound
from corral.api import Category, ComponentKind, Format
from tiny_pipelines import same
from corral.testing import open_model

VAE, CLIP_L, CLIP_G, T5XXL = ComponentKind.VAE, ComponentKind.CLIP_L, ComponentKind.CLIP_G, ComponentKind.T5XXL
PROMPT = "a red square on a white field"


def _sdxl_parts(files):
    p = files.parts
    return {VAE: p["vae"], CLIP_L: p["clip_l"], CLIP_G: p["clip_g"]}


def _flux_parts(files):
    p = files.parts
    return {VAE: p["vae"], CLIP_L: p["clip_l"], T5XXL: p["t5xxl"]}


def _image(library, ref, size, **settings):
    with open_model(library, ref, overrides=settings) as handle:
        return handle.imagine(PROMPT, steps=2, width=size[0], height=size[1], seed=9)[0]


def test_sd_official_from_separate_files_equals_the_pipeline_folder(library, sdxl):
    result = library.import_path(sdxl.parts["unet"], template="sd_official", components=_sdxl_parts(sdxl))
    model = result.model
    assert model.category == Category.IMAGE and model.format == Format.SAFETENSORS
    assert model.facts.extra["template"] == "sd_official"
    assert {c.kind for c in model.components} == {VAE, CLIP_L, CLIP_G}
    assert model.tags == ("text-to-image", "image-to-image")
    library.update_settings(model.id, {"config": str(sdxl.config)})  # configs and tokenizers only, no weights
    folder = library.import_path(sdxl.folder).model
    # The VAE file is in the original LDM layout: converted on load, the weights are the folder's own.
    assert same(_image(library, model.id, (64, 64)), _image(library, folder.id, (64, 64)))


@pytest.mark.parametrize("prefix", ["", "model.diffusion_model."])
def test_sdxl_unet_in_the_original_layout_is_sdxl(library, sdxl, tmp_path, prefix):
    """A UNet file in the original LDM layout, bare or under model.diffusion_model., is told apart from
    SD 1.x by its size-conditioning label_emb, and renders as the pipeline folder does."""
    from safetensors.torch import load_file, save_file
    from tiny_pipelines import ldm_unet

    state = load_file(sdxl.folder / "unet" / "diffusion_pytorch_model.safetensors")
    layers = json.loads((sdxl.folder / "unet" / "config.json").read_text())["layers_per_block"]
    path = tmp_path / "sdxl-unet-ldm.safetensors"
    save_file({prefix + k: v for k, v in ldm_unet(state, layers).items()}, path)
    result = library.import_path(path, template="sd_official", components=_sdxl_parts(sdxl))
    assert result.model.facts.architecture == "sdxl", result.detection.reasons
    assert "label_emb" in " ".join(result.detection.reasons)
    library.update_settings(result.model.id, {"config": str(sdxl.config)})
    folder = library.import_path(sdxl.folder).model
    assert same(_image(library, result.model.id, (64, 64)), _image(library, folder.id, (64, 64)))


def test_an_sdxl_all_in_one_checkpoint_loads_its_own_parts(library, tmp_path):
    """An SDXL single file (UNet, VAE, CLIP-L and an OpenCLIP CLIP-G inside) is SDXL, needs no components,
    and renders as the pipeline folder does."""
    from tiny_pipelines import config_only, same_but_rounding, tiny_sdxl, write_all_in_one_sdxl

    pipe = tiny_sdxl(clip_g_width=48)  # CLIP-G wider than CLIP-L, as in SDXL (1280 vs 768)
    pipe.save_pretrained(tmp_path / "pipeline")
    result = library.import_path(write_all_in_one_sdxl(pipe, tmp_path / "tiny-sdxl.safetensors"))
    model = result.model
    assert (model.category, model.facts.architecture) == (Category.IMAGE, "sdxl")
    assert "two text encoders" in result.detection.reasons[-1]
    assert model.components == ()
    library.update_settings(model.id, {"config": str(config_only(tmp_path / "pipeline", tmp_path / "config"))})
    folder = library.import_path(tmp_path / "pipeline").model
    image, reference = _image(library, model.id, (64, 64)), _image(library, folder.id, (64, 64))
    # Every weight, buffer and config equals the folder's; the pooled CLIP-G embedding still differs by
    # about 3e-7 (float rounding of the in-memory OpenCLIP conversion), at most one level in a pixel.
    assert same_but_rounding(image, reference)
    with open_model(library, folder.id) as handle:  # while another seed is far more than rounding away
        other = handle.imagine(PROMPT, steps=2, width=64, height=64, seed=10)[0]
    assert not same_but_rounding(image, other)


def test_diffusers_unet_files_name_their_family(library, sdxl, sd15):
    sdxl_unet = library.import_path(sdxl.folder / "unet" / "diffusion_pytorch_model.safetensors",
                                    template="sd_official", components=_sdxl_parts(sdxl))
    assert sdxl_unet.model.facts.architecture == "sdxl"
    from corral.api import detect_path

    sd15_unet = detect_path(sd15.folder / "unet" / "diffusion_pytorch_model.safetensors")
    assert sd15_unet.facts.architecture == "stable-diffusion" and "SD 1.x/2.x" in sd15_unet.reasons[-1]


@pytest.mark.parametrize("main", ["transformer", "gguf", "folder"])
def test_flux_from_separate_files_and_a_gguf(library, flux, main):
    """The transformer as a single file, as a Q8_0 GGUF, or as a diffusers transformer/ folder."""
    path = flux.folder / "transformer" if main == "folder" else flux.parts[main]
    model = library.import_path(path, template="flux", components=_flux_parts(flux)).model
    assert model.facts.architecture == "flux"
    if main == "gguf":
        assert model.format == Format.GGUF and model.facts.quantization == "Q8_0"
    folder = library.import_path(flux.folder).model
    image = _image(library, model.id, (32, 32), config=str(flux.config))
    reference = _image(library, folder.id, (32, 32))
    if main != "gguf":
        assert same(image, reference)
    else:  # 8-bit weights: close to the full-precision image, not equal
        from tiny_pipelines import pixels

        assert image.size == (32, 32) and abs(pixels(image) - pixels(reference)).mean() < 8


def test_a_diffusers_folder_needs_no_components_for_its_template(library, flux):
    model = library.import_path(flux.folder, template="flux").model
    assert model.components == () and set(model.facts.extra["bundled"]) == {"vae", "clip-l", "t5xxl"}
    assert _image(library, model.id, (32, 32)).size == (32, 32)


def test_missing_components_refuse_the_import_and_name_each(library, sdxl):
    with pytest.raises(Incompatible) as err:
        library.import_path(sdxl.parts["unet"], template="sd_official", components={VAE: sdxl.parts["vae"]})
    message = str(err.value)
    assert "clip-l, clip-g" in message and "--clip-l PATH --clip-g PATH" in message
    assert library.store.list_models() == []  # nothing half-written


def test_wrong_template_imports_are_refused(library, sdxl, flux, tmp_path):
    from factories import write_tiny_gguf

    chat = write_tiny_gguf(tmp_path / "tiny-chat.gguf")
    with pytest.raises(Incompatible, match="is a flux model, not Stable Diffusion XL-style.*--template flux"):
        library.import_path(flux.parts["transformer"], template="sd_official", components=_sdxl_parts(sdxl))
    with pytest.raises(Incompatible, match="is a flux model.*--template flux"):
        library.import_path(flux.parts["gguf"], template="video", components={VAE: flux.parts["vae"]})
    with pytest.raises(Incompatible, match="not an image model"):
        library.import_path(chat, template="flux", components=_flux_parts(flux))
    with pytest.raises(Incompatible, match="is a vae, not a main model"):
        library.import_path(sdxl.parts["vae"], template="sd_official", components=_sdxl_parts(sdxl))
    wrong = {**_flux_parts(flux), VAE: flux.parts["clip_l"]}
    with pytest.raises(Incompatible, match="clip_l.safetensors is not a vae component"):
        library.import_path(flux.parts["transformer"], template="flux", components=wrong)
    assert library.store.list_models() == []


def test_a_removed_component_refuses_the_load_listing_what_is_missing(library, flux):
    model = library.import_path(flux.parts["transformer"], template="flux", components=_flux_parts(flux)).model
    library.update_settings(model.id, {"config": str(flux.config)})
    library.remove_component(model.id, CLIP_L)
    library.remove_component(model.id, T5XXL)
    with pytest.raises(Incompatible) as err:
        with open_model(library, model.id):
            pass
    assert "needs clip-l, t5xxl" in str(err.value)
    assert f"corral component add {model.name} t5xxl PATH" in str(err.value)
    library.add_component(model.id, CLIP_L, flux.parts["clip_l"])
    library.add_component(model.id, T5XXL, flux.parts["t5xxl"])
    assert _image(library, model.id, (32, 32)).size == (32, 32)


def test_a_replaced_component_is_the_one_loaded(library, flux, tmp_path):
    """Replacing the VAE with a copy in diffusers layout gives the same image; one from another model does not."""
    from safetensors.torch import load_file, save_file

    model = library.import_path(flux.parts["transformer"], template="flux", components=_flux_parts(flux)).model
    library.update_settings(model.id, {"config": str(flux.config)})
    before = _image(library, model.id, (32, 32))
    diffusers_vae = tmp_path / "vae-diffusers.safetensors"
    shutil.copy(flux.folder / "vae" / "diffusion_pytorch_model.safetensors", diffusers_vae)
    library.add_component(model.id, VAE, diffusers_vae)
    assert same(_image(library, model.id, (32, 32)), before)
    other = {k: v * 1.5 for k, v in load_file(diffusers_vae).items()}
    save_file(other, tmp_path / "vae-other.safetensors")
    library.add_component(model.id, VAE, tmp_path / "vae-other.safetensors")
    assert not same(_image(library, model.id, (32, 32)), before)


def test_config_found_in_the_hugging_face_cache_or_clearly_not(library, flux, tmp_path, monkeypatch):
    """Without a config setting, the family's repository is looked up in the local cache only."""
    import huggingface_hub.constants as hub

    cache = tmp_path / "hub"
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(cache))
    model = library.import_path(flux.parts["transformer"], template="flux", components=_flux_parts(flux)).model
    with pytest.raises(NotFound) as err:
        with open_model(library, model.id):
            pass
    assert "black-forest-labs/FLUX.1-dev" in str(err.value) and "config=DIR" in str(err.value)
    # The cache layout huggingface_hub writes: refs/main names the snapshot folder.
    repo = cache / "models--black-forest-labs--FLUX.1-dev"
    commit = "0123456789abcdef0123456789abcdef01234567"
    shutil.copytree(flux.config, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    assert _image(library, model.id, (32, 32)).size == (32, 32)


def test_component_kinds_without_a_place_are_refused_at_load(library, sdxl, flux):
    model = library.import_path(flux.folder).model
    library.add_component(model.id, CLIP_G, sdxl.parts["clip_g"])
    with pytest.raises(Incompatible, match="a clip-g component has no place in a FluxPipeline"):
        with open_model(library, model.id):
            pass


def test_a_pickled_checkpoint_loads_through_the_safe_loader(library, sdxl, tmp_path):
    """A ``.ckpt`` UNet (a torch pickle of plain tensors) loads with torch's weights_only loader."""
    import torch
    from safetensors.torch import load_file

    ckpt = tmp_path / "unet.ckpt"
    torch.save({"state_dict": load_file(sdxl.parts["unet"])}, ckpt)
    model = library.import_path(ckpt, template="sd_official", components=_sdxl_parts(sdxl)).model
    assert model.format == Format.PYTORCH_PICKLE
    folder = library.import_path(sdxl.folder).model
    assert same(_image(library, model.id, (64, 64), config=str(sdxl.config)), _image(library, folder.id, (64, 64)))


def test_a_pickle_that_runs_code_is_never_unpickled(library, sdxl, tmp_path):
    from corral.api import DetectionError, UnsafeFile
    from factories_weights import write_malicious_pickle

    marker = tmp_path / "ran"
    evil = write_malicious_pickle(tmp_path / "unet.ckpt", marker)
    with pytest.raises(UnsafeFile):
        library.import_path(evil, template="sd_official", components=_sdxl_parts(sdxl))
    model = library.import_path(evil, template="sd_official", components=_sdxl_parts(sdxl), allow_unsafe=True).model
    with pytest.raises(DetectionError, match="safe loader refuses"):
        _image(library, model.id, (64, 64), config=str(sdxl.config))
    assert not marker.exists()


def test_an_all_in_one_checkpoint_loads_its_own_parts(library, sd15, tmp_path):
    """A single-file SD checkpoint with its VAE and text encoder inside (LDM layout) needs no components;
    an attached VAE replaces the one inside."""
    from safetensors.torch import load_file, save_file

    result = library.import_path(sd15.parts["checkpoint"])
    model = result.model
    assert (model.category, model.facts.architecture) == (Category.IMAGE, "stable-diffusion")
    assert "with its VAE and text encoder inside" in result.detection.reasons[-1]
    library.update_settings(model.id, {"config": str(sd15.config)})
    folder = library.import_path(sd15.folder).model
    inside = _image(library, model.id, (64, 64))
    assert same(inside, _image(library, folder.id, (64, 64)))
    brighter = {k: v * 1.5 for k, v in load_file(sd15.folder / "vae" / "diffusion_pytorch_model.safetensors").items()}
    save_file(brighter, tmp_path / "other-vae.safetensors")
    library.add_component(model.id, VAE, tmp_path / "other-vae.safetensors")
    assert not same(_image(library, model.id, (64, 64)), inside)
    copy = tmp_path / "copy.safetensors"
    shutil.copy(sd15.parts["checkpoint"], copy)
    with pytest.raises(Incompatible, match="needs clip-g besides the main model"):
        library.import_path(copy, template="sd_official")  # it carries its VAE and CLIP-L, not a CLIP-G
