"""Corral's conformance suite for this plugin (fixtures from corral's pytest plugin, corral.testing)."""

import pytest

from corral.testing import Conformance, Sample


def is_kokoro_speech(answer) -> None:
    samples, rate = answer
    assert rate == 24000 and samples.ndim == 1 and len(samples) % 600 == 0


class TestConformance(Conformance):
    plugin = "kokoro"

    @pytest.fixture
    def corral_sample(self, kokoro_dir):
        return Sample(kokoro_dir, task="speak", settings={"device": "cpu"}, params={"voice": "af_heart"},
                      check=is_kokoro_speech)
