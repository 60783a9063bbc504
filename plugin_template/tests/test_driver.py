"""The driver's own behaviour, through the library as the CLI and the server use it."""

import pytest

from corral.testing import write_tiny_gguf


@pytest.fixture
def corral_plugin():
    return "NAME"


def test_answers_with_the_saved_greeting(corral_library, tmp_path):
    model = corral_library.import_path(write_tiny_gguf(tmp_path / "tiny.gguf")).model
    corral_library.update_settings(model.name, {"greeting": "Howdy"})
    with corral_library.open_model(model.name) as handle:
        answer = handle.chat([{"role": "user", "content": "how are you?"}])
    assert answer.text == "Howdy, how are you?"
