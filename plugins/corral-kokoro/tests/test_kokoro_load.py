"""Loading refuses, with one clear Corral error naming the file, every Kokoro folder it cannot speak with:
a checkpoint that does not match config.json, files that are not what they claim, voices of the wrong
shape, an unsafe voice pickle, files gone since import. Nothing is ever unpickled outside torch's
``weights_only`` loader."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import attrs
import pytest

from corral.api import CorralError, DetectionError, NotFound
from corral_kokoro.driver import KokoroDriver


@pytest.fixture
def model(library, kokoro_dir):
    return library.import_path(kokoro_dir, name="tiny").model


def copy_layout(src: Path, dest: Path, *, config: dict | None = None, link_checkpoint: bool = True) -> Path:
    """``src``'s layout in ``dest``: the big checkpoint linked, voices copied, config.json edited."""
    (dest / "voices").mkdir(parents=True)
    for voice in (src / "voices").iterdir():
        shutil.copy(voice, dest / "voices" / voice.name)
    data = json.loads((src / "config.json").read_text(encoding="utf-8"))
    (dest / "config.json").write_text(json.dumps(config(data) if callable(config) else data), encoding="utf-8")
    if link_checkpoint:
        (dest / "kokoro-v1_0.pth").symlink_to(src / "kokoro-v1_0.pth")
    return dest


def load_error(model, folder: Path, *fragments: str, kind: type = CorralError) -> str:
    """Load ``model`` pointed at ``folder`` (and speak once): the error, checked to name the file."""
    moved = attrs.evolve(model, path=folder, paths=(folder,))
    with pytest.raises(kind) as err:
        handle = KokoroDriver().load(moved, {"device": "cpu"})
        try:
            handle.speak("Hello.", voice="af_heart")
        finally:
            handle.unload()
    message = str(err.value)
    assert "tiny" in message and "Traceback" not in message
    for fragment in fragments:
        assert fragment in message, message
    return message


def edited(key: str, value):
    def edit(config: dict) -> dict:
        config[key] = value
        return config
    return edit


def test_a_checkpoint_that_does_not_match_the_config(model, kokoro_dir, tmp_path):
    folder = copy_layout(kokoro_dir, tmp_path / "deeper", config=edited("n_layer", 2))
    load_error(model, folder, "kokoro-v1_0.pth does not match config.json", "missing", kind=DetectionError)
    folder = copy_layout(kokoro_dir, tmp_path / "wider", config=lambda c: {**c, "plbert": {**c["plbert"],
                                                                                         "hidden_size": 64}})
    load_error(model, folder, "does not match config.json in bert", "wrong shape", kind=DetectionError)


def test_only_the_identity_norms_may_be_missing(model, kokoro_dir, tmp_path):
    """Kokoro-82M has no weights for the affine part of its AdaIN instance norms (like the tiny model);
    a checkpoint that has them loads them, one that lacks any other weight is refused."""
    import torch

    from corral_kokoro.loading import identity_norm_keys

    state = torch.load(kokoro_dir / "kokoro-v1_0.pth", weights_only=True)
    handle = KokoroDriver().load(model, {"device": "cpu"})
    try:
        norms = identity_norm_keys(handle.kmodel.decoder)
        assert norms and not any(f"module.{k}" in state["decoder"] for k in norms)
        weights = handle.kmodel.decoder.state_dict()
        assert all(torch.all(weights[k] == (1 if k.endswith("weight") else 0)) for k in norms)
    finally:
        handle.unload()

    with_norms = copy_layout(kokoro_dir, tmp_path / "with-norms", link_checkpoint=False)
    full = {k: dict(v) for k, v in state.items()}
    full["decoder"].update({f"module.{k}": torch.full_like(weights[k], 0.5) for k in norms})
    torch.save(full, with_norms / "kokoro-v1_0.pth")
    handle = KokoroDriver().load(attrs.evolve(model, path=with_norms), {"device": "cpu"})
    try:
        assert all(torch.all(handle.kmodel.decoder.state_dict()[k] == 0.5) for k in norms)
    finally:
        handle.unload()

    lacking = copy_layout(kokoro_dir, tmp_path / "lacking", link_checkpoint=False)
    cut = {k: dict(v) for k, v in state.items()}
    del cut["decoder"]["module.generator.conv_post.bias"]
    torch.save(cut, lacking / "kokoro-v1_0.pth")
    load_error(model, lacking, "does not match config.json in decoder", "missing generator.conv_post.bias",
               kind=DetectionError)


@pytest.mark.parametrize("key, value, fragment", [
    ("style_dim", 64, "style_dim is 64"),
    ("hidden_dim", 256, "hidden_dim is 256"),
    ("n_token", "many", "n_token"),
    ("vocab", {"a": 999}, "vocab ids"),
    ("plbert", None, "kokoro cannot build a model from config.json"),
])
def test_a_config_kokoro_cannot_speak_with(model, kokoro_dir, tmp_path, key, value, fragment):
    folder = copy_layout(kokoro_dir, tmp_path / "bad", config=edited(key, value))
    load_error(model, folder, fragment, kind=DetectionError)


@pytest.mark.parametrize("content, fragment", [
    (b"this is not a checkpoint\n" * 10, "not a readable PyTorch checkpoint"),
    ({"bert": {}}, "not a Kokoro checkpoint"),
    ([1, 2, 3], "not a Kokoro checkpoint"),
])
def test_a_checkpoint_that_is_not_kokoros(model, kokoro_dir, tmp_path, content, fragment):
    import torch

    folder = copy_layout(kokoro_dir, tmp_path / "bad", link_checkpoint=False)
    if isinstance(content, bytes):
        (folder / "kokoro-v1_0.pth").write_bytes(content)
    else:
        torch.save(content, folder / "kokoro-v1_0.pth")
    load_error(model, folder, "kokoro-v1_0.pth", fragment, kind=DetectionError)


def test_the_core_fixture_layout_is_detected_but_refused_at_load(library, tmp_path):
    from factories_weights import write_kokoro_dir

    folder = write_kokoro_dir(tmp_path / "fake")
    fake = library.import_path(folder, name="fake").model
    assert fake.facts.voices == ("af_heart", "bf_emma", "zf_xiaobei")
    with pytest.raises(DetectionError, match="fake: .*kokoro-v1_0.pth does not match config.json"):
        KokoroDriver().load(fake, {"device": "cpu"})


@pytest.mark.parametrize("voice, fragment", [
    ("small", "found shape (4, 1, 8)"),
    ("dict", "found dict"),
    ("ints", "found shape (510, 1, 256)"),
    ("junk", "not a readable PyTorch tensor file"),
])
def test_a_voice_that_is_not_a_voice_pack(model, kokoro_dir, tmp_path, voice, fragment):
    import torch

    folder = copy_layout(kokoro_dir, tmp_path / "bad")
    path = folder / "voices" / "af_heart.pt"
    if voice == "small":
        torch.save(torch.zeros(4, 1, 8), path)
    elif voice == "dict":
        torch.save({"style": torch.zeros(510, 256)}, path)
    elif voice == "ints":
        torch.save(torch.zeros(510, 1, 256, dtype=torch.int64), path)
    else:
        path.write_bytes(b"not a tensor")
    load_error(model, folder, "voice af_heart", str(path), fragment, kind=DetectionError)


def test_an_unsafe_voice_is_never_unpickled(model, kokoro_dir, tmp_path):
    from factories_weights import write_malicious_pickle

    folder = copy_layout(kokoro_dir, tmp_path / "bad")
    target = tmp_path / "pwned"
    write_malicious_pickle(folder / "voices" / "af_heart.pt", target, zip=True)
    load_error(model, folder, "voice af_heart", "not a readable PyTorch tensor file", kind=DetectionError)
    assert not target.exists()


def test_files_gone_since_import(model, tmp_path):
    load_error(model, tmp_path / "gone", "is missing", kind=NotFound)
    empty = tmp_path / "empty"
    empty.mkdir()
    load_error(model, empty, "not a Kokoro folder", kind=DetectionError)


def test_a_two_voice_folder_lists_only_its_voices(library, kokoro_dir, tmp_path):
    folder = copy_layout(kokoro_dir, tmp_path / "two")
    (folder / "voices" / "zf_xiaobei.pt").unlink()
    two = library.import_path(folder, name="two").model
    assert two.facts.voices == ("af_heart", "bf_emma")
    handle = KokoroDriver().load(two, {"device": "cpu"})
    try:
        assert handle.voices == ["af_heart", "bf_emma"]
        assert handle.default_voice("z") == "af_heart"  # no Mandarin voice: the model's first
        with pytest.raises(CorralError, match="'zf_xiaobei' is not one of its voices: af_heart, bf_emma$"):
            handle.speak("你好", voice="zf_xiaobei")
    finally:
        handle.unload()


def test_loras_are_refused(model):
    from corral.api import Unsupported

    with pytest.raises(Unsupported, match="no LoRA"):
        KokoroDriver().load(model, {}, loras=(object(),))
