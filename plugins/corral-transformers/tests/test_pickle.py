"""Pickled checkpoints (pytorch_model.bin) load only through torch's weights-only loader: a real one
answers like its safetensors twin; a malicious one is refused at import, refused at load when it was
recorded as unsafe, and refused by torch when it was swapped in behind Corral's back, and its payload
never runs (the file it would create never appears)."""

from __future__ import annotations

import shutil

import attrs
import pytest

from corral.api import UnsafeFile
from corral.api import Category
from corral.testing import driver_for, open_model

PROMPT = "The quick brown fox jumps over the lazy dog"


def pickle_twin(src, dest):
    """A copy of the model folder ``src`` whose weights are a torch.save pickle (pytorch_model.bin)."""
    import torch
    from safetensors.torch import load_file

    shutil.copytree(src, dest)
    state = load_file(str(dest / "model.safetensors"))
    (dest / "model.safetensors").unlink()
    torch.save(state, dest / "pytorch_model.bin")
    return dest


def hostile_twin(src, dest, target, *, zip=True, via="system"):
    """A copy of ``src`` whose pytorch_model.bin would create ``target`` if it were ever unpickled."""
    from factories import write_malicious_pickle

    shutil.copytree(src, dest)
    (dest / "model.safetensors").unlink()
    write_malicious_pickle(dest / "pytorch_model.bin", target, zip=zip, via=via)
    return dest


def test_a_pickled_model_loads_through_the_weights_only_path(library, tiny_dir, tmp_path, monkeypatch):
    import torch

    with open_model(library, library.import_path(tiny_dir, name="safe").model.id) as handle:
        expected = handle.complete(PROMPT, temperature=0, max_tokens=8).text
    folder = pickle_twin(tiny_dir, tmp_path / "pickled")
    model = library.import_path(folder, name="pickled").model
    assert model.facts.extra["weights"] == "pickle" and model.unsafe is None
    calls = []
    real_load = torch.load

    def watched(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", watched)
    with open_model(library, "pickled") as handle:
        assert handle.complete(PROMPT, temperature=0, max_tokens=8).text == expected
    assert calls and all(flag is True for flag in calls)


def test_a_lone_pickle_file_loads_too(library, tiny_dir, tmp_path):
    with open_model(library, library.import_path(tiny_dir, name="safe").model.id) as handle:
        expected = handle.complete(PROMPT, temperature=0, max_tokens=8).text
    folder = pickle_twin(tiny_dir, tmp_path / "pickled")
    lone = folder / "pytorch_model.bin"
    model = library.import_path(lone, name="lone", category=Category.TEXT_GENERATION).model
    assert model.format.value == "pytorch-pickle"
    with open_model(library, model.id) as handle:
        assert handle.complete(PROMPT, temperature=0, max_tokens=8).text == expected


@pytest.mark.parametrize("zip,via", [(True, "system"), (False, "system"), (True, "exec"), (False, "exec")])
def test_a_malicious_pickle_never_runs(library, tiny_dir, tmp_path, zip, via):
    target = tmp_path / "pwned"
    folder = hostile_twin(tiny_dir, tmp_path / "hostile", target, zip=zip, via=via)

    # 1. Import refuses it: the opcode scan finds the non-tensor import.
    with pytest.raises(UnsafeFile):
        library.import_path(folder, name="hostile")
    assert library.store.list_models() == []

    # 2. Recorded anyway with --allow-unsafe: the driver refuses the record before opening a file.
    flagged = library.import_path(folder, name="hostile", allow_unsafe=True).model
    assert flagged.unsafe
    with pytest.raises(UnsafeFile, match=r"hostile: its weights are an unsafe pickle .* corral rm hostile"):
        with open_model(library, "hostile"):
            pass

    # 3. Swapped in after a clean import (the record says safe): torch's weights-only loader refuses it.
    clean = attrs.evolve(flagged, unsafe=None)
    driver = driver_for(library.host, clean)
    with pytest.raises(UnsafeFile, match=r"pytorch_model.bin|hostile") as caught:
        driver().load(clean, {}, ())
    assert "weights-only loader refused" in str(caught.value) and "nothing in them ran" in str(caught.value)

    # 4. As a lone file beside its config.json: refused the same way.
    lone = attrs.evolve(clean, path=folder / "pytorch_model.bin", paths=(folder / "pytorch_model.bin",),
                        format=clean.format.__class__("pytorch-pickle"))
    with pytest.raises(UnsafeFile, match=r"pytorch_model.bin: this checkpoint is a pickle that holds more than tensors"):
        driver().load(lone, {}, ())
    assert not target.exists()


def test_a_malicious_adapter_pickle_never_runs(library, tiny, tmp_path):
    from factories import write_malicious_pickle
    from transformers_factories import build_adapter

    from corral.api import Lora

    target = tmp_path / "pwned"
    adapter = build_adapter(library.store.get_model("tiny").path, tmp_path / "lora", seed=1)
    (adapter / "adapter_model.safetensors").unlink()
    write_malicious_pickle(adapter / "adapter_model.bin", target, zip=True)
    with pytest.raises(UnsafeFile):
        library.add_lora("tiny", adapter, name="hostile")
    forced = library.store.add_lora(Lora(id="badc0ffee000", name="hostile", base_id=tiny.id,
                                         format=tiny.format, path=adapter))
    with pytest.raises(UnsafeFile, match=r"adapter_model.bin: LoRA hostile is a pickle that holds more than tensors"):
        with open_model(library, "tiny", loras=[forced.name]):
            pass
    assert not target.exists()
