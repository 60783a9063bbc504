"""Corral's conformance suite for this plugin (fixtures from corral's pytest plugin, corral.testing)."""

import pytest
from transformers_factories import CHAT_TEMPLATE, copy_model

from corral.api import ChatResult
from corral.testing import Conformance, Sample


def _answered(answer: ChatResult) -> None:
    assert answer.completion_tokens == 8 and answer.prompt_tokens


class TestConformance(Conformance):
    plugin = "transformers"

    @pytest.fixture
    def corral_sample(self, tiny_created, tmp_path):
        """The tiny `corral create` model with a chat template: chat, and plain completion."""
        chat = copy_model(tiny_created, tmp_path / "chat", chat_template=CHAT_TEMPLATE)
        plain = copy_model(tiny_created, tmp_path / "plain")
        return [
            Sample(chat, task="chat", settings={"dtype": "float32"}, params={"seed": 1}, check=_answered),
            Sample(plain, task="complete", settings={"dtype": "bfloat16"}, params={"temperature": 0}),
        ]
