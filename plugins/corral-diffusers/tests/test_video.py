"""Video models (Wan): frames from a diffusers folder and from separate files with the video template,
written by `corral imagine` as a folder of PNG frames or an .mp4."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from corral.api import Unsupported
from corral.api import Incompatible
from corral.api import ComponentKind
from tiny_pipelines import same
from corral.testing import open_model

PROMPT = "a dancing square"


def test_frames_from_a_pipeline_folder_equal_raw_diffusers(library, wan):
    from diffusers import DiffusionPipeline

    model = library.import_path(wan.folder).model
    assert {"video", "text-to-video"} <= set(model.tags)
    with open_model(library, model.id) as handle:
        frames = handle.imagine(PROMPT, steps=2, width=16, height=16, num_frames=5, seed=2, guidance=4.0)
        with pytest.raises(Unsupported, match="not tagged for image-to-video"):
            handle.imagine(PROMPT, image=frames[0], steps=2)
    assert len(frames) == 5 and all(f.size == (16, 16) for f in frames)
    pipe = DiffusionPipeline.from_pretrained(str(wan.folder), local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    raw = pipe(PROMPT, num_inference_steps=2, width=16, height=16, num_frames=5, guidance_scale=4.0,
               generator=torch.Generator("cpu").manual_seed(2), output_type="pil").frames[0]
    assert all(same(a, b) for a, b in zip(frames, raw))


def test_diffusers_wan_transformer_file_is_detected_as_video(wan):
    from corral.api import detect_path
    from corral.api import Category

    found = detect_path(wan.parts["transformer"])
    assert (found.category, found.facts.architecture) == (Category.IMAGE, "wan")
    assert found.facts.extra["tags"] == ["text-to-video", "video"] and "diffusers" in found.reasons[-1]


def test_video_template_from_separate_files(library, wan):
    p = wan.parts
    model = library.import_path(p["transformer"], template="video",
                                 components={ComponentKind.VAE: p["vae"], ComponentKind.T5XXL: p["umt5xxl"]}).model
    assert model.tags == ("video",) and model.facts.architecture == "wan"
    folder = library.import_path(wan.folder).model
    settings = {"config": str(wan.config)}
    with open_model(library, model.id, overrides=settings) as handle:
        mine = handle.imagine(PROMPT, steps=2, width=16, height=16, num_frames=5, seed=3)
    with open_model(library, folder.id) as handle:
        reference = handle.imagine(PROMPT, steps=2, width=16, height=16, num_frames=5, seed=3)
    assert len(mine) == 5 and all(same(a, b) for a, b in zip(mine, reference))
    library.remove_component(model.id, ComponentKind.T5XXL)
    with pytest.raises(Incompatible, match="the pipeline needs t5xxl, found neither attached nor in") as err:
        with open_model(library, model.id, overrides=settings):
            pass
    assert "corral component add" in str(err.value)


def test_imagine_writes_frames_to_a_folder(run, wan, tmp_path):
    assert run("import", wan.folder, "--name", "tiny-wan").exit_code == 0
    out = tmp_path / "clip"
    result = run("imagine", "tiny-wan", PROMPT, "--steps", "2", "--size", "16x16", "--frames", "5", "--seed", "1",
                 "--out", out)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [f"frame_{n:04d}.png" for n in range(5)]
    png = run("imagine", "tiny-wan", PROMPT, "--steps", "1", "--size", "16x16", "--frames", "5",
              "--out", tmp_path / "clip.png")
    assert png.exit_code != 0 and "give --out a folder" in png.stderr
    mp4 = run("imagine", "tiny-wan", PROMPT, "--steps", "1", "--size", "16x16", "--frames", "5",
              "--out", tmp_path / "clip.mp4")
    if importlib.util.find_spec("imageio") is None:
        assert mp4.exit_code != 0 and "pip install imageio imageio-ffmpeg" in mp4.stderr
    else:
        import imageio.v3 as iio

        assert mp4.exit_code == 0, mp4.output
        assert iio.imread(tmp_path / "clip.mp4").shape[:3] == (5, 16, 16)  # decoded back: 5 frames of 16x16
