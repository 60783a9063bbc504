"""Device, precision and memory settings. CUDA-only paths run only where torch sees a CUDA GPU."""

from __future__ import annotations

import pytest
import torch

from corral.api import InvalidSetting
from tiny_pipelines import pixels
from corral.testing import open_model

PROMPT = "a red square on a white field"
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _run(library, ref, **settings):
    with open_model(library, ref, overrides=settings) as handle:
        image = handle.imagine(PROMPT, steps=2, width=64, height=64, seed=6)[0]
        return image, handle.memory(), handle


def test_memory_savers_give_the_same_picture(library, sdxl):
    model = library.import_path(sdxl.folder).model
    plain, memory, _ = _run(library, model.id)
    saved, _, _ = _run(library, model.id, attention_slicing=True, vae_tiling=True)
    assert memory["ram"] > 0 and memory["vram"] == 0
    assert saved.size == (64, 64) and abs(pixels(saved) - pixels(plain)).mean() < 2


def test_bf16_halves_the_weights(library, sdxl):
    model = library.import_path(sdxl.folder).model
    _, fp32, _ = _run(library, model.id, dtype="fp32")
    image, bf16, _ = _run(library, model.id, dtype="bf16")
    assert image.size == (64, 64)
    assert abs(bf16["ram"] * 2 - fp32["ram"]) < fp32["ram"] * 0.01


def test_cpu_offload_without_a_gpu_leaves_the_weights_where_they_are(library, sdxl):
    model = library.import_path(sdxl.folder).model
    library.update_settings(model.id, {"cpu_offload": "model", "device": "cpu"})
    image, memory, handle = _run(library, model.id)
    assert image.size == (64, 64) and memory["vram"] == 0
    assert any("cpu_offload=model does nothing on cpu" in note for note in handle.notes)


def test_bad_settings_are_refused(library, sdxl):
    model = library.import_path(sdxl.folder).model
    for key, value, words in (("cpu_offload", "always", "must be one of none, model, sequential"),
                              ("dtype", "int8", "must be one of fp32"),
                              ("device", "tpu", "is not auto, cpu, cuda, cuda:N or mps"),
                              ("vae_tiling", "maybe", "wants a bool")):
        with pytest.raises(InvalidSetting, match=words):
            library.update_settings(model.id, {key: value})
            _run(library, model.id)
        library.update_settings(model.id, {}, reset=True)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_asking_for_cuda_without_one_says_so(library, sdxl):
    model = library.import_path(sdxl.folder).model
    with pytest.raises(InvalidSetting, match="sees no CUDA GPU"):
        _run(library, model.id, device="cuda")


@needs_cuda
@pytest.mark.parametrize("offload", ["none", "model", "sequential"])
def test_cuda_fp16_and_offload(library, sdxl, offload):
    model = library.import_path(sdxl.folder).model
    image, memory, _ = _run(library, model.id, device="cuda", dtype="fp16", cpu_offload=offload)
    assert image.size == (64, 64)
    if offload == "none":
        assert memory["vram"] > 0
