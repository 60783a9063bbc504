"""The driver on tiny random-weight GGUFs that llama.cpp really loads: settings, context, LoRA, registration."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from corral.api import drain
from corral.api import CorralError, Incompatible, InvalidSetting
from corral.api import Category, Format, Lora, LoraRequest
from corral_llamacpp import LlamaCppDriver
from factories import write_lora_gguf, write_tiny_gguf
from corral.testing import open_model

FAST = {"threads": 1}
# Counts are "at least": the random tiny model often emits byte tokens, and llama-cpp-python finishes an
# incomplete UTF-8 character past max_tokens rather than cut it.


def last_logits(handle, text: str) -> np.ndarray:
    """llama.cpp's logits for the last token of ``text`` (read from the context after evaluating it)."""
    import llama_cpp

    llm = handle.llama
    tokens = llm.tokenize(text.encode(), add_bos=True, special=False)
    llm.reset()
    llm.eval(tokens)
    logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits(llm.ctx), shape=(llm.n_vocab(),)).copy()
    llm.reset()
    return logits


def test_driver_declares_what_it_handles():
    assert LlamaCppDriver.name == "llamacpp"
    assert LlamaCppDriver.categories == {Category.CHAT, Category.MULTIMODAL}
    assert LlamaCppDriver.formats == {Format.GGUF}
    assert LlamaCppDriver.requires == ("llama_cpp",)
    assert LlamaCppDriver.max_loras == 1
    declared = {s.name for s in LlamaCppDriver.settings}
    assert {
        "threads_batch", "n_batch", "n_ubatch", "use_mmap", "use_mlock", "numa", "tensor_split", "main_gpu",
        "rope_freq_base", "rope_freq_scale", "rope_scaling_type", "flash_attn", "cache_type_k", "cache_type_v",
        "chat_template", "chat_format",
    } <= declared  # fmt: skip
    # n_ctx, n_gpu_layers, threads and seed are the core's settings; the driver does not redeclare them.
    assert not {"n_ctx", "n_gpu_layers", "threads", "seed"} & declared


def test_registration_imports_nothing_heavy():
    probe = "import sys, corral_llamacpp; print([m for m in ('llama_cpp', 'jinja2', 'numpy') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_check_reports_version_and_acceleration():
    import llama_cpp

    status = LlamaCppDriver.check()
    assert status.available and status.version == llama_cpp.__version__
    expected = "gpu-offload" if llama_cpp.llama_supports_gpu_offload() else "cpu-only build"
    assert status.acceleration[0] == expected
    assert any(a.startswith("cpu:CPU") for a in status.acceleration)  # the CPU device, by ggml's name
    assert any(a in status.acceleration for a in ("cpu:AVX2", "cpu:NEON", "cpu:SSE3", "cpu:AVX"))


def test_tiny_model_loads_answers_and_reports_memory(library, tiny):
    with open_model(library, tiny.name, overrides=FAST) as handle:
        result = handle.complete("hello world", max_tokens=6, temperature=0)
        assert result.completion_tokens >= 6 and result.finish_reason == "length"
        assert result.prompt_tokens == len(handle.llama.tokenize(b"hello world"))
        chat = handle.chat([{"role": "user", "content": "hello world"}], max_tokens=4, temperature=0)
        assert chat.completion_tokens >= 4
        memory = handle.memory()
        assert set(memory) == {"ram", "vram"} and memory["ram"] > 0 and memory["vram"] == 0
        # No template in the file, architecture llama, no special chat tokens in its vocabulary.
        assert handle.template.name == "llama2"
    with pytest.raises(CorralError, match="unloaded"):
        handle.complete("hello")


def test_n_ctx_zero_is_the_models_own_and_a_saved_change_applies_at_next_load(library, tiny):
    with open_model(library, tiny.name, overrides=FAST) as handle:
        assert handle.context_length == tiny.facts.context_length == 2048
    library.update_settings(tiny.name, {"n_ctx": "256", "threads": "1"})
    with open_model(library, tiny.name) as handle:
        assert handle.context_length == 256
        with pytest.raises(CorralError, match=r"the prompt is \d+ tokens but the context holds 256"):
            handle.complete("hello world " * 200)
    library.update_settings(tiny.name, {"n_ctx": "512"})
    with open_model(library, tiny.name) as handle:
        assert handle.context_length == 512


def test_every_llama_option_is_accepted_saved_and_loads(library, tmp_path):
    # Heads of 32 dimensions: a q8_0 KV cache stores blocks of 32 values.
    wide = library.import_path(write_tiny_gguf(tmp_path / "wide.gguf", n_embd=128)).model
    model = library.update_settings(wide.name, {
        "threads": "1", "threads_batch": "1", "n_batch": "256", "n_ubatch": "128", "use_mmap": "false",
        "use_mlock": "false", "numa": "off", "tensor_split": "1", "main_gpu": "0", "split_mode": "layer",
        "rope_freq_base": "20000", "rope_freq_scale": "0.5", "rope_scaling_type": "linear", "flash_attn": "true",
        "cache_type_k": "q8_0", "cache_type_v": "q8_0", "offload_kqv": "true", "seed": "7",
        "swa_full": "false",
    })  # fmt: skip
    assert model.settings["tensor_split"] == [1.0] and model.settings["flash_attn"] is True
    with open_model(library, wide.name) as handle:
        llm = handle.llama
        assert (llm.context_params.n_batch, llm.context_params.n_ubatch) == (256, 128)
        assert llm.context_params.rope_freq_base == 20000 and llm.context_params.rope_freq_scale == 0.5
        assert (llm.context_params.type_k, llm.context_params.type_v) == (8, 8)  # GGML_TYPE_Q8_0
        assert llm.context_params.swa_full is False
        assert handle.complete("hello", max_tokens=3).completion_tokens >= 3


def test_settings_llama_cpp_refuses_are_explained(library, tiny):
    # The tiny model's heads are 16 wide; llama.cpp's q8_0 cache needs multiples of 32 and says so in its log.
    library.update_settings(tiny.name, {"cache_type_k": "q8_0", "flash_attn": "true"})
    with pytest.raises(CorralError, match="K cache type q8_0 with block size 32 does not divide") as err:
        with open_model(library, tiny.name):
            pass
    assert "corral settings tiny-chat" in str(err.value)


def test_settings_llama_cpp_would_refuse_are_refused_clearly(library, tiny):
    with pytest.raises(InvalidSetting, match="cache_type_v"):
        library.update_settings(tiny.name, {"cache_type_v": "q3"})
    library.update_settings(tiny.name, {"cache_type_v": "q4_0", "flash_attn": "false"})
    with pytest.raises(InvalidSetting, match="cache_type_v=q4_0 needs flash attention"):
        with open_model(library, tiny.name):
            pass
    library.update_settings(tiny.name, {"cache_type_v": "f16", "chat_format": "no-such-format"})
    with pytest.raises(InvalidSetting, match="chat_format 'no-such-format' is not one of llama-cpp-python's"):
        with open_model(library, tiny.name):
            pass
    library.update_settings(tiny.name, {"chat_format": "chatml", "chat_template": "gemma"})
    with pytest.raises(InvalidSetting, match="not both"):
        with open_model(library, tiny.name):
            pass


def test_seeded_sampling_repeats_and_params_apply(library, tiny):
    with open_model(library, tiny.name, overrides=FAST) as handle:
        a = handle.complete("hello", max_tokens=12, temperature=1.5, seed=11)
        b = handle.complete("hello", max_tokens=12, temperature=1.5, seed=11)
        assert a.text == b.text
        pieces, ended = drain(handle.complete("hello", stream=True, max_tokens=12, temperature=1.5, seed=11))
        assert "".join(pieces) == a.text
        # The stream ends with the same finish reason and token counts as the whole answer.
        assert (ended.finish_reason, ended.prompt_tokens, ended.completion_tokens) == (
            a.finish_reason, a.prompt_tokens, a.completion_tokens)
        chat = handle.chat([{"role": "user", "content": "hi"}], max_tokens=5, temperature=0)
        _, chat_ended = drain(handle.chat([{"role": "user", "content": "hi"}], stream=True, max_tokens=5,
                                          temperature=0))
        assert (chat_ended.finish_reason, chat_ended.completion_tokens) == (chat.finish_reason,
                                                                            chat.completion_tokens)
        aliased = handle.complete("hello", max_tokens=12, temperature=0, repetition_penalty=1.3, top_k=5)
        plain = handle.complete("hello", max_tokens=12, temperature=0, repeat_penalty=1.3, top_k=5)
        assert aliased.text == plain.text
        with pytest.raises(InvalidSetting, match="temperature must be a number"):
            handle.complete("hello", temperature="hot")


# --- LoRA --------------------------------------------------------------------------------------------


def test_matching_lora_loads_and_changes_the_logits(library, tiny, tmp_path):
    lora = library.add_lora(tiny.name, write_lora_gguf(tmp_path / "fits.gguf", alpha=64.0))
    with open_model(library, tiny.name, overrides=FAST) as base:
        plain = last_logits(base, "hello world")
    with open_model(library, tiny.name, loras=[lora.name], overrides=FAST) as handle:
        assert handle.llama.lora_path == str(lora.path)
        assert [r.lora.id for r in handle.loras] == [lora.id]
        adapted = last_logits(handle, "hello world")
        assert handle.complete("hello", max_tokens=3).completion_tokens >= 3
    with open_model(library, tiny.name, loras=[f"{lora.name}=0"], overrides=FAST) as handle:
        muted = last_logits(handle, "hello world")
    assert not np.allclose(plain, adapted)  # the adapter really applies...
    np.testing.assert_allclose(plain, muted, atol=1e-4)  # ...scaled by its weight


def test_mismatched_lora_is_refused_before_llama_cpp_sees_it(library, tiny, tmp_path):
    path = write_lora_gguf(tmp_path / "wide.gguf", n_embd=128)
    with pytest.raises(Incompatible, match="does not fit"):
        library.add_lora(tiny.name, path)
    # Bound some other way (or the base changed on disk since): the driver checks again at load.
    stray = Lora(id="x", name="wide", base_id=tiny.id, format=Format.GGUF, path=path)
    with pytest.raises(Incompatible) as err:
        LlamaCppDriver().load(tiny, FAST, [LoraRequest(stray)])
    message = str(err.value)
    assert "wide.gguf does not fit base tiny-chat.gguf" in message and "expects 128 inputs, base has 64" in message


def test_one_lora_per_load(library, tiny, tmp_path):
    first = library.add_lora(tiny.name, write_lora_gguf(tmp_path / "a.gguf"))
    second = library.add_lora(tiny.name, write_lora_gguf(tmp_path / "b.gguf", seed=5))
    with pytest.raises(Incompatible, match="at most 1 LoRA"):
        with open_model(library, tiny.name, loras=[first.name, second.name]):
            pass
    with pytest.raises(Incompatible, match="one LoRA per load"):
        LlamaCppDriver().load(tiny, FAST, [LoraRequest(first), LoraRequest(second)])


VERBOSE_SCRIPT = """
import sys
from pathlib import Path
import corral_llamacpp
from corral.library import open_library
from corral.testing import build_host, open_model
home, model_path = Path(sys.argv[1]), Path(sys.argv[2])
lib = open_library(home, build_host(entry_points=False, plugins=[corral_llamacpp]))
model = lib.import_path(model_path).model
for verbose in (False, True):
    with open_model(lib, model.name, overrides={"threads": 1, "verbose": verbose}) as handle:
        print("ANSWER", handle.complete("hello", max_tokens=2).completion_tokens >= 2, flush=True)
        sys.stderr.write("LOAD-DONE\\n")
"""


def test_verbose_setting_shows_llama_cpp_log(tmp_path):
    model_path = write_tiny_gguf(tmp_path / "tiny.gguf")
    out = subprocess.run(
        [sys.executable, "-c", VERBOSE_SCRIPT, str(tmp_path / "home"), str(model_path)],
        capture_output=True, text=True, timeout=120, env={**os.environ, "CORRAL_LOAD_PLUGINS": ""},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("ANSWER True") == 2
    quiet, loud = out.stderr.split("LOAD-DONE\n")[:2]
    assert "llama" not in quiet  # nothing from llama.cpp by default
    assert "llama_model_load" in loud or "llama_context" in loud
