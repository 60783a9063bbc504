"""Settings that make sense for the model (trained context, RoPE, cores, device), the settings table, and
`corral edit --path` repointing a record whose files moved, through the real CLI."""

from __future__ import annotations

import os
import shutil

import pytest

from factories import write_cross_encoder, write_tiny_gguf
from corral.testing.cli import as_json, assert_clean_error, ok


@pytest.fixture
def host():
    """The built-in plugins and the real llama.cpp plugin (its RoPE and llama.cpp settings)."""
    llamacpp = pytest.importorskip("corral_llamacpp")
    from corral.testing import installed_host

    with installed_host(llamacpp) as fresh:
        yield fresh


@pytest.fixture
def tiny(run, tmp_path):
    path = write_tiny_gguf(tmp_path / "models" / "tiny-chat.gguf", context_length=2048)
    as_json(run("import", path, "--name", "tiny", "--json"))
    return path


def test_n_ctx_above_the_trained_context_needs_rope(run, tiny):
    assert_clean_error(run("settings", "tiny", "--n-ctx", "8192"), "n_ctx 8192", "2048 tokens it was trained with",
                       "rope_scaling_type")
    assert ok(run("settings", "tiny", "--n-ctx", "2048"))
    saved = as_json(run("settings", "tiny", "--n-ctx", "8192", "--set", "rope_scaling_type=yarn",
                        "--set", "rope_freq_scale=0.25", "--json"))["saved"]
    assert saved == {"n_ctx": 8192, "rope_scaling_type": "yarn", "rope_freq_scale": 0.25}
    # Dropping the RoPE settings would leave a context the model cannot use: refused too.
    assert_clean_error(run("settings", "tiny", "--unset", "rope_scaling_type", "--unset", "rope_freq_scale"),
                       "n_ctx 8192", "2048")
    # rope_scaling_type=none is the model's own: no extension.
    assert_clean_error(run("settings", "tiny", "--reset", "--n-ctx", "4096", "--set", "rope_scaling_type=none"),
                       "n_ctx 4096")


def test_threads_above_the_core_count_warn(run, tiny):
    cores = os.cpu_count()
    result = ok(run("settings", "tiny", "--threads", str(cores + 8)))
    assert f"threads={cores + 8} is more than this machine's {cores} CPU cores" in result.stderr
    assert as_json(run("settings", "tiny", "--threads", str(cores + 8), "--json"))["warnings"]
    assert "Warning" not in ok(run("settings", "tiny", "--threads", "1")).stderr


def test_device_is_a_choice(run, tiny):
    assert_clean_error(run("settings", "tiny", "--set", "device=tpu"), "'tpu'", "cpu, cuda, cuda:N or mps")
    assert_clean_error(run("settings", "tiny", "--set", "device=cdua"), "did you mean cuda?")
    assert_clean_error(run("settings", "tiny", "--set", "device=cpu:1"), "'cpu:1'")
    for device in ("cpu", "cuda", "cuda:1", "mps"):
        assert as_json(run("settings", "tiny", "--set", f"device={device}", "--json"))["saved"]["device"] == device


def test_unknown_keys_suggest_the_close_one(run, tiny):
    assert_clean_error(run("settings", "tiny", "--set", "temprature=0.5"), "unknown setting 'temprature'",
                       "did you mean temperature?", "corral settings tiny")
    assert_clean_error(run("settings", "tiny", "--unset", "n_gpu_layer"), "did you mean n_gpu_layers?")


def test_a_sampling_default_a_request_would_refuse_is_refused_when_saved(run, tiny):
    """top_p and repeat_penalty must be above 0, as a request's own are: a saved 0 is refused at once
    and nothing is saved, rather than every later request failing."""
    for setting in ("top_p=0", "repeat_penalty=0", "top_p=-0.5"):
        assert_clean_error(run("settings", "tiny", "--set", setting), f"setting {setting.split('=')[0]} must be above 0")
    assert_clean_error(run("settings", "tiny", "--set", "top_p=1.5"), "setting top_p must be at most 1")
    assert as_json(run("settings", "tiny", "--json"))["saved"] == {}
    saved = as_json(run("settings", "tiny", "--set", "top_p=0.01", "--set", "repeat_penalty=1.1",
                        "--set", "temperature=0", "--json"))["saved"]
    assert saved == {"top_p": 0.01, "repeat_penalty": 1.1, "temperature": 0.0}
    rows = {row["name"]: row for row in as_json(run("settings", "tiny", "--json"))["settings"]}
    assert rows["top_p"]["exclusive_minimum"] is True and rows["temperature"]["exclusive_minimum"] is False


def test_settings_lists_every_key_with_default_and_current(run, tiny):
    ok(run("settings", "tiny", "--set", "temperature=0.3"))
    table = ok(run("settings", "tiny")).stdout
    header, *rows = table.splitlines()
    assert header.split()[:3] == ["SETTING", "CURRENT", "DEFAULT"]
    by_name = {r.split()[0]: r.split() for r in rows}
    assert by_name["temperature"][1] == "0.3"
    assert by_name["n_batch"][1:3] == ["(default)", "512"]  # a llama.cpp setting, from the plugin
    assert "request_timeout" in by_name and "rope_freq_scale" in by_name
    doc = as_json(run("settings", "tiny", "--json"))
    assert doc["model"] == "tiny" and doc["saved"] == {"temperature": 0.3}
    rows = {r["name"]: r for r in doc["settings"]}
    assert rows["temperature"]["saved"] and rows["temperature"]["value"] == 0.3
    assert rows["n_batch"] == {**rows["n_batch"], "default": 512, "value": 512, "saved": False, "type": "int"}
    assert rows["numa"]["choices"] == ["off", "distribute", "isolate", "numactl", "mirror"]


def test_edit_path_repoints_a_moved_model(run, tiny, tmp_path):
    ok(run("settings", "tiny", "--set", "seed=7"))
    before = as_json(run("show", "tiny", "--json"))["model"]
    moved = tmp_path / "elsewhere" / "tiny-chat.gguf"
    moved.parent.mkdir()
    shutil.move(tiny, moved)
    shown = ok(run("show", "tiny")).stdout
    assert "missing" in shown and "corral edit tiny --path" in shown
    after = as_json(run("edit", "tiny", "--path", moved, "--json"))["model"]
    assert after["path"] == str(moved) and not after["missing"]
    assert (after["id"], after["name"], after["settings"]) == (before["id"], "tiny", {"seed": 7})
    assert "missing" not in ok(run("show", "tiny")).stdout


def test_edit_path_refuses_another_kind_of_model(run, tiny, tmp_path):
    other_arch = write_tiny_gguf(tmp_path / "q" / "qwen.gguf", arch="qwen2")
    assert_clean_error(run("edit", "tiny", "--path", other_arch), "not the same kind of model",
                       "architecture qwen2, not llama")
    reranker = write_cross_encoder(tmp_path / "rr")
    assert_clean_error(run("edit", "tiny", "--path", reranker), "format hf-dir, not gguf", "category rerank")
    assert_clean_error(run("edit", "tiny", "--path", tmp_path / "nothing.gguf"), "no such file")
    assert as_json(run("show", "tiny", "--json"))["model"]["path"] == str(tiny)


def test_edit_path_refuses_another_records_file(run, tiny, tmp_path):
    second = write_tiny_gguf(tmp_path / "two" / "second.gguf", context_length=1024)  # not a duplicate
    as_json(run("import", second, "--name", "second", "--json"))
    assert_clean_error(run("edit", "tiny", "--path", second), "already the record second")
