"""LoRAs on image models: several at once, each with its weight, from a file or a folder; refused when they
belong to another family."""

from __future__ import annotations

import pytest

from corral.api import Incompatible
from tiny_pipelines import pixels, same
from corral.testing import open_model

PROMPT = "a red square on a white field"


def _image(library, ref, loras=(), size=(32, 32)):
    with open_model(library, ref, loras=loras) as handle:
        return handle.imagine(PROMPT, steps=2, width=size[0], height=size[1], seed=4)[0]


@pytest.mark.parametrize("which,size", [("flux", (32, 32)), ("sdxl", (64, 64))])
def test_two_loras_with_weights_change_the_output(request, library, which, size):
    files = request.getfixturevalue(which)
    model = library.import_path(files.folder).model
    a = library.add_lora(model.id, files.loras[0], name="style-a")  # a folder (pytorch_lora_weights.safetensors)
    b = library.add_lora(model.id, files.loras[1] / "pytorch_lora_weights.safetensors", name="style-b", weight=0.5)
    plain = _image(library, model.id, size=size)
    both = _image(library, model.id, ["style-a=0.8", "style-b"], size=size)  # style-b at its default 0.5
    again = _image(library, model.id, ["style-a=0.8", "style-b=0.5"], size=size)
    only_a = _image(library, model.id, ["style-a=0.8"], size=size)
    lighter = _image(library, model.id, ["style-a=0.2", "style-b=0.5"], size=size)
    zero = _image(library, model.id, ["style-a=0", "style-b=0"], size=size)
    assert both.size == size
    assert same(both, again)
    for other in (plain, only_a, lighter):
        assert not same(both, other)
    # Weights scale the change: at zero both adapters leave the image as it was.
    assert same(zero, plain)
    assert abs(pixels(lighter) - pixels(plain)).mean() < abs(pixels(both) - pixels(plain)).mean()
    assert {lora.id for lora in library.store.list_loras(model.id)} == {a.id, b.id}


def test_loras_equal_diffusers_set_adapters(library, flux):
    """The same two adapters through diffusers directly give the same image."""
    import torch
    from diffusers import DiffusionPipeline

    model = library.import_path(flux.folder).model
    library.add_lora(model.id, flux.loras[0], name="a")
    library.add_lora(model.id, flux.loras[1], name="b")
    mine = _image(library, model.id, ["a=0.7", "b=0.4"])
    pipe = DiffusionPipeline.from_pretrained(str(flux.folder), local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    pipe.load_lora_weights(str(flux.loras[0]), adapter_name="x")
    pipe.load_lora_weights(str(flux.loras[1]), adapter_name="y")
    pipe.set_adapters(["x", "y"], adapter_weights=[0.7, 0.4])
    raw = pipe(PROMPT, num_inference_steps=2, width=32, height=32,
               generator=torch.Generator("cpu").manual_seed(4)).images[0]
    assert same(mine, raw)


def test_a_lora_of_another_family_is_refused(library, flux, sdxl):
    model = library.import_path(flux.folder).model
    with pytest.raises(Incompatible, match="is for stable-diffusion, base .* is flux"):
        library.add_lora(model.id, sdxl.loras[0])


def test_a_lora_that_fits_no_layer_is_refused_at_load(library, flux, tmp_path):
    """An adapter whose layers the model does not have changes nothing: the load says so."""
    from safetensors.torch import load_file, save_file

    model = library.import_path(flux.folder).model
    state = load_file(flux.loras[0] / "pytorch_lora_weights.safetensors")
    renamed = {k.replace("transformer_blocks", "elsewhere_blocks"): v for k, v in state.items()}
    save_file(renamed, tmp_path / "stray.safetensors")
    library.add_lora(model.id, tmp_path / "stray.safetensors", name="stray")
    with pytest.raises(Incompatible, match="LoRA stray"):
        _image(library, model.id, ["stray"])
