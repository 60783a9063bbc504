"""Multimodal: a tiny text model with a generated projector that libmtmd runs, images in and text out; and
the projectors llama.cpp cannot run, refused at load with one clear error."""

from __future__ import annotations

import base64

import pytest

from corral.api import Unsupported
from corral.api import CorralError, Incompatible, InvalidSetting
from corral.api import Category, ComponentKind
from factories import write_mmproj_gguf
from llamacpp_factories import png_bytes, write_llava_mmproj
from corral.testing import open_model

FAST = {"threads": 1, "n_ctx": 512}
GREEDY = {"temperature": 0, "max_tokens": 8}


def data_url(seed: int = 0) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(seed=seed)).decode()


def image(url: str) -> dict:
    return {"type": "image_url", "image_url": {"url": url}}


TEXT = {"type": "text", "text": "hello world"}


@pytest.fixture
def vision(library, tiny, tmp_path):
    """The tiny model with a runnable projector attached: a multimodal model."""
    model = library.add_component(tiny.name, ComponentKind.MMPROJ, write_llava_mmproj(tmp_path / "mmproj.gguf"))
    assert model.category == Category.MULTIMODAL
    return model


def test_image_goes_through_the_projector_into_the_answer(library, vision, tmp_path):
    with open_model(library, vision.name, overrides=FAST) as handle:
        one = handle.chat([{"role": "user", "content": [image(data_url()), TEXT]}], **GREEDY)
        two = handle.chat([{"role": "user", "content": [image(data_url()), image(data_url()), TEXT]}], **GREEDY)
        other = handle.chat([{"role": "user", "content": [image(data_url(seed=5)), TEXT]}], **GREEDY)
        path = tmp_path / "picture.png"
        path.write_bytes(png_bytes())
        from_file = handle.chat([{"role": "user", "content": [image(str(path)), TEXT]}], **GREEDY)
        from_url = handle.chat([{"role": "user", "content": [image(path.as_uri()), TEXT]}], **GREEDY)
        streamed = list(handle.chat([{"role": "user", "content": [image(data_url()), TEXT]}], stream=True, **GREEDY))
        text_only = handle.chat([{"role": "user", "content": "hello world"}], **GREEDY)
    assert one.completion_tokens >= 8 and one.text
    # A 28x28 projector input in 14-pixel patches: each image is 4 embeddings in the prompt.
    assert two.prompt_tokens - one.prompt_tokens == 4
    assert other.text != one.text  # different pixels, different answer: the image reaches the model
    assert from_file.text == from_url.text == one.text  # a path or file:// URL reads the same image
    assert "".join(streamed) == one.text
    assert text_only.text != one.text


def test_image_input_errors_are_clear(library, vision):
    with open_model(library, vision.name, overrides=FAST) as handle:
        with pytest.raises(CorralError, match="remote image URLs are not fetched"):
            handle.chat([{"role": "user", "content": [image("https://example.com/cat.png"), TEXT]}])
        with pytest.raises(CorralError, match="not valid base64"):
            handle.chat([{"role": "user", "content": [image("data:image/png;base64,@@@"), TEXT]}])
        with pytest.raises(CorralError, match="an image could not be decoded"):
            handle.chat([{"role": "user", "content": [image("data:image/png;base64,aGVsbG8="), TEXT]}])
        with pytest.raises(CorralError, match="No such file"):
            handle.chat([{"role": "user", "content": [image("/nonexistent/cat.png"), TEXT]}])
        with pytest.raises(CorralError, match="images go in user messages"):
            handle.chat([{"role": "system", "content": [image(data_url())]}, {"role": "user", "content": "hi"}])
        # The model still answers after every refusal.
        assert handle.chat([{"role": "user", "content": [image(data_url()), TEXT]}], **GREEDY).text


def test_image_to_a_model_without_projector_says_how_to_attach_one(library, tiny):
    with open_model(library, tiny.name, overrides=FAST) as handle:
        attach = r"no mmproj component; attach one with `corral component add tiny-chat mmproj PATH`"
        with pytest.raises(Unsupported, match=attach):
            handle.chat([{"role": "user", "content": [image(data_url()), TEXT]}])


def test_projector_llama_cpp_cannot_run_is_refused_at_load(library, tiny, tmp_path):
    # factories.write_mmproj_gguf writes a header-only projector: detection accepts it, libmtmd cannot run it.
    library.add_component(tiny.name, ComponentKind.MMPROJ, write_mmproj_gguf(tmp_path / "stub-mmproj.gguf"))
    with pytest.raises(Incompatible, match=r"mmproj .*stub-mmproj.gguf: llama.cpp could not load this projector"):
        with open_model(library, tiny.name, overrides=FAST):
            pass
    library.remove_component(tiny.name, ComponentKind.MMPROJ)
    with open_model(library, tiny.name, overrides=FAST) as handle:  # this process is fine
        assert handle.complete("hello", max_tokens=2).completion_tokens >= 2


def test_projector_of_the_wrong_width_is_refused_before_loading(library, tiny, tmp_path):
    narrow = write_llava_mmproj(tmp_path / "narrow.gguf", projection_dim=32)
    library.add_component(tiny.name, ComponentKind.MMPROJ, narrow)
    with pytest.raises(Incompatible, match="projects to 32 dimensions, but tiny-chat is 64 wide"):
        with open_model(library, tiny.name, overrides=FAST):
            pass


def test_chat_format_is_for_text_only_models(library, vision):
    library.update_settings(vision.name, {"chat_format": "chatml"})
    with pytest.raises(InvalidSetting, match="chat_format applies to text-only models"):
        with open_model(library, vision.name, overrides=FAST):
            pass
