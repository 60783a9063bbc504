"""The driver's own behaviour, through the library as the CLI and the server use it."""

import pytest

from corral.testing import open_model, write_tiny_gguf


@pytest.fixture
def corral_plugin():
    return "NAME"


def test_answers_with_the_saved_greeting(corral_library, tmp_path):
    model = corral_library.import_path(write_tiny_gguf(tmp_path / "tiny.gguf")).model
    corral_library.update_settings(model.name, {"greeting": "Howdy"})
    with open_model(corral_library, model.name) as handle:
        answer = handle.chat([{"role": "user", "content": "how are you?"}])
    assert answer.text == "Howdy, how are you?"
