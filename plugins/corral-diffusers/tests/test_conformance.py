"""Corral's conformance suite for this plugin (fixtures from corral's pytest plugin, corral.testing)."""

import pytest

from corral.testing import Sample
from corral.testing import Conformance


def _size(width, height):
    def check(images):
        assert all(image.size == (width, height) for image in images)

    return check


class TestConformance(Conformance):
    plugin = "diffusers"

    @pytest.fixture
    def corral_sample(self, sdxl, flux):
        return [
            Sample(sdxl.folder, task="imagine", params={"steps": 1, "width": 64, "height": 64}, check=_size(64, 64)),
            Sample(flux.folder, task="imagine", params={"steps": 1, "width": 32, "height": 32}, check=_size(32, 32)),
            # A GGUF transformer; the rest of its pipeline (with weights) from a diffusers folder.
            Sample(flux.parts["gguf"], task="imagine", settings={"config": str(flux.folder)},
                   params={"steps": 1, "width": 32, "height": 32}, check=_size(32, 32)),
        ]
