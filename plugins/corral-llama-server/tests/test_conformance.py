"""Corral's conformance suite for this plugin (fixtures from corral's pytest plugin, corral.testing)."""

import pytest

from corral.testing import Conformance, Sample, write_tiny_gguf


class TestConformance(Conformance):
    plugin = "llama-server"

    @pytest.fixture
    def corral_sample(self, tmp_path):
        return Sample(write_tiny_gguf(tmp_path / "tiny.gguf"), task="chat", settings={"n_ctx": 256, "parallel": 2})
