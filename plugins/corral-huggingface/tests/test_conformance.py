"""The plugin contract every Corral plugin meets (corral.testing)."""

from corral.testing import Conformance


class TestConformance(Conformance):
    plugin = "huggingface"
