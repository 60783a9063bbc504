"""Corral's conformance suite for this plugin (fixtures from corral's pytest plugin, corral.testing)."""

from corral.testing import Conformance


class TestConformance(Conformance):
    plugin = "transformers"
