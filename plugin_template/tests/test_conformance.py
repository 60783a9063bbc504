"""Corral's conformance suite, run for this plugin (pytest gets its fixtures from corral's pytest plugin)."""

import pytest

from corral.testing import Conformance, Sample, write_tiny_gguf


class TestConformance(Conformance):
    plugin = "NAME"

    @pytest.fixture
    def corral_sample(self, tmp_path):
        return Sample(write_tiny_gguf(tmp_path / "tiny.gguf"), task="chat")
