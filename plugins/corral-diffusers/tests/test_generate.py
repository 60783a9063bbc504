"""Generation from diffusers folders: asked sizes, seeds, image-to-image, the raw pipeline's output, and
requests refused with Corral errors."""

from __future__ import annotations

import pytest
import torch

from corral.api import CorralError, InvalidRequest, NotFound
from tiny_pipelines import same
from corral.testing import open_model

PROMPT = "a red square on a white field"


def _raw(folder, prompt, *, seed, **kwargs):
    """The same generation through diffusers directly, without Corral."""
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(str(folder), local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe(prompt, generator=torch.Generator("cpu").manual_seed(seed), output_type="pil", **kwargs).images[0]


@pytest.mark.parametrize("which,size", [("sdxl", (64, 64)), ("sdxl", (48, 32)), ("flux", (32, 32)), ("flux", (48, 16))])
def test_image_of_asked_size_equal_to_raw_diffusers(request, library, which, size):
    files = request.getfixturevalue(which)
    model = library.import_path(files.folder).model
    width, height = size
    with open_model(library, model.id) as handle:
        images = handle.imagine(PROMPT, steps=2, width=width, height=height, seed=7, guidance=3.0)
    assert len(images) == 1 and images[0].size == size
    raw = _raw(files.folder, PROMPT, seed=7, num_inference_steps=2, width=width, height=height, guidance_scale=3.0)
    assert same(images[0], raw)


def test_same_seed_same_image_other_seed_other_image(library, sdxl):
    model = library.import_path(sdxl.folder).model
    with open_model(library, model.id) as handle:
        first = handle.imagine(PROMPT, steps=2, width=64, height=64, seed=1)[0]
        again = handle.imagine(PROMPT, steps=2, width=64, height=64, seed=1)[0]
        other = handle.imagine(PROMPT, steps=2, width=64, height=64, seed=2)[0]
        prompt = handle.imagine("green circles everywhere", steps=2, width=64, height=64, seed=1)[0]
    assert same(first, again)
    assert not same(first, other)
    assert not same(first, prompt)


@pytest.mark.parametrize("which,size", [("sdxl", (64, 64)), ("flux", (32, 32))])
def test_image_to_image_from_a_file_and_a_pil_image(request, library, tmp_path, which, size):
    from PIL import Image

    files = request.getfixturevalue(which)
    model = library.import_path(files.folder).model
    source = Image.new("RGB", (80, 80), (200, 30, 30))
    source.paste((20, 20, 220), (0, 0, 40, 80))
    path = tmp_path / "input.png"
    source.save(path)
    width, height = size
    with open_model(library, model.id) as handle:
        text = handle.imagine(PROMPT, steps=2, width=width, height=height, seed=5)[0]
        light = handle.imagine(PROMPT, image=path, strength=0.3, steps=4, width=width, height=height, seed=5)[0]
        again = handle.imagine(PROMPT, image=source, strength=0.3, steps=4, width=width, height=height, seed=5)[0]
        heavy = handle.imagine(PROMPT, image=path, strength=0.9, steps=4, width=width, height=height, seed=5)[0]
    assert light.size == size
    assert same(light, again)
    assert not same(light, text) and not same(light, heavy)
    # What diffusers' own image-to-image pipeline makes of the same input, resized to the asked size.
    from diffusers import AutoPipelineForImage2Image

    raw = AutoPipelineForImage2Image.from_pretrained(str(files.folder), local_files_only=True)
    raw.set_progress_bar_config(disable=True)
    expected = raw(PROMPT, image=source.resize(size, Image.LANCZOS), strength=0.3, num_inference_steps=4,
                   width=width, height=height, generator=torch.Generator("cpu").manual_seed(5)).images[0]
    assert same(light, expected)


def test_bad_requests_are_corral_errors(library, sdxl, tmp_path):
    model = library.import_path(sdxl.folder).model
    garbage = tmp_path / "not-an-image.png"
    garbage.write_text("hello")
    with open_model(library, model.id) as handle:
        with pytest.raises(InvalidRequest, match="multiples of 2"):
            handle.imagine(PROMPT, width=63, height=64)
        with pytest.raises(InvalidRequest, match="both width and height"):
            handle.imagine(PROMPT, width=64)
        with pytest.raises(InvalidRequest, match="takes no colour"):
            handle.imagine(PROMPT, colour="red")
        with pytest.raises(InvalidRequest, match="strength applies to image-to-image"):
            handle.imagine(PROMPT, strength=0.5)
        with pytest.raises(InvalidRequest, match="cannot be read as an image"):
            handle.imagine(PROMPT, image=garbage, steps=1)
        with pytest.raises(NotFound, match="does not exist"):
            handle.imagine(PROMPT, image=tmp_path / "absent.png", steps=1)
        with pytest.raises(InvalidRequest, match="prompt is empty"):
            handle.imagine("  ")
        with pytest.raises(InvalidRequest, match="num_frames applies to video"):
            handle.imagine(PROMPT, num_frames=5, steps=1)


def test_the_wrong_task_and_a_missing_folder_are_corral_errors(library, sdxl, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(sdxl.folder, copy)
    model = library.import_path(copy).model
    with open_model(library, model.id) as handle:
        with pytest.raises(CorralError, match="cannot chat"):
            handle.chat([{"role": "user", "content": "hi"}])
    shutil.rmtree(copy / "unet")
    with pytest.raises(CorralError, match="unet") as err:
        with open_model(library, model.id):
            pass
    assert model.name in str(err.value)


def test_image_to_image_with_no_step_left_is_refused(library, sdxl, tmp_path):
    from PIL import Image

    model = library.import_path(sdxl.folder).model
    source = Image.new("RGB", (64, 64), (10, 10, 200))
    with open_model(library, model.id) as handle:
        with pytest.raises(InvalidRequest, match="1 steps at strength 0.3 leave no step to run"):
            handle.imagine(PROMPT, image=source, steps=1)
        assert handle.imagine(PROMPT, image=source, steps=1, strength=1.0)[0].size == (64, 64)
