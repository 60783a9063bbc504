"""Corral's conformance suite for this plugin (fixtures from corral's pytest plugin, corral.testing)."""

import pytest

from corral.testing import Conformance, Sample


class TestConformance(Conformance):
    plugin = "sentence-transformers"

    @pytest.fixture
    def corral_sample(self, minilm_path, cross_encoder_dir):
        return [Sample(minilm_path, task="embed"), Sample(cross_encoder_dir, task="rerank")]
