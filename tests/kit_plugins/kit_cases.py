"""The conformance suite, run for each kit plugin (tests/test_plugin_kit.py runs this file in a
subprocess and checks which tests fail)."""

import pytest

from corral.testing import Conformance, Sample, write_tiny_gguf


class KitSample:
    @pytest.fixture
    def corral_sample(self, tmp_path):
        return Sample(write_tiny_gguf(tmp_path / "tiny.gguf"), task="chat")


class TestGood(KitSample, Conformance):
    plugin = "kit-good"


class TestHeavy(KitSample, Conformance):
    plugin = "kit-heavy"


class TestNocaps(KitSample, Conformance):
    plugin = "kit-nocaps"


class TestGreedy(KitSample, Conformance):
    plugin = "kit-greedy"


class TestLeaky(KitSample, Conformance):
    plugin = "kit-leaky"


class TestMute(KitSample, Conformance):
    plugin = "kit-mute"


class TestAbsent(KitSample, Conformance):
    plugin = "kit-not-installed"
