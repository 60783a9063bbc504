"""The CUDA path: the model and voices on the GPU, the same speech as on the CPU. Skipped without a GPU."""

from __future__ import annotations

import pytest
from corral.testing import open_model

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")


def test_speaks_on_the_gpu(library, kokoro_dir):
    model = library.import_path(kokoro_dir, name="tiny").model
    lengths = {}
    for device in ("cpu", "cuda"):
        with open_model(library, model.id, overrides={"device": device}) as handle:
            assert handle.kmodel.device.type == device
            samples, rate = handle.speak("Hello there, friend.", voice="af_heart")
            zh, _ = handle.speak("你好，朋友。", speed=2.0)
            assert rate == 24000 and len(samples) % 600 == 0 and len(zh) > 0
            assert abs(samples).max() <= 1.0
            lengths[device] = len(samples)
            memory = handle.memory()
            if device == "cuda":
                params = sum(p.numel() * p.element_size() for p in handle.kmodel.parameters())
                assert memory["vram"] >= params and memory["ram"] < params
    # Durations come from the same weights: within a frame or two per token of each other.
    assert abs(lengths["cuda"] - lengths["cpu"]) <= 0.1 * lengths["cpu"], lengths


def test_default_device_is_the_gpu(library, kokoro_dir):
    model = library.import_path(kokoro_dir, name="tiny").model
    with open_model(library, model.id) as handle:
        assert handle.device == "cuda" and handle.kmodel.device.type == "cuda"
        samples, rate = handle.speak("Hi.", lang="a")
        assert rate == 24000 and len(samples) > 0
