"""What the plugin adds to detection: GGUF image denoisers are image models, not language models."""

from __future__ import annotations

import pytest

from corral.api import DetectionError
from corral.api import Category, Format


def test_a_gguf_denoiser_imports_as_an_image_model(library, flux):
    result = library.import_path(flux.parts["gguf"])
    model = result.model
    assert (model.category, model.format, model.facts.architecture) == (Category.IMAGE, Format.GGUF, "flux")
    assert model.facts.quantization == "Q8_0" and model.tags == ("text-to-image", "image-to-image")
    assert any("general.architecture = flux" in reason for reason in result.detection.reasons)


def test_language_model_ggufs_are_left_to_the_core(library, tmp_path):
    from factories import write_tiny_gguf

    model = library.import_path(write_tiny_gguf(tmp_path / "tiny.gguf")).model
    assert model.category == Category.CHAT


def test_a_truncated_gguf_denoiser_is_a_detection_error(library, flux, tmp_path):
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(flux.parts["gguf"].read_bytes()[:4096])
    with pytest.raises(DetectionError, match="cut.gguf"):
        library.import_path(cut)
