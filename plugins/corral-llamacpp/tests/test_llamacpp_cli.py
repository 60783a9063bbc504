"""`corral chat` end to end with the real Gemma, in a fresh process as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def corral(tmp_path_factory):
    """Run ``corral ARGS...`` in a subprocess with this plugin only and an empty CORRAL_HOME."""
    env = {**os.environ, "CORRAL_HOME": str(tmp_path_factory.mktemp("cli-home")), "CORRAL_LOAD_PLUGINS": "llamacpp"}

    def invoke(*args, input=None):
        return subprocess.run(
            [sys.executable, "-m", "corral", *map(str, args)], capture_output=True, text=True, input=input,
            env=env, timeout=300,
        )  # fmt: skip

    return invoke


@pytest.fixture(scope="module")
def gemma_name(corral, gemma_path):
    out = corral("import", gemma_path, "--name", "gemma")
    assert out.returncode == 0, out.stderr
    out = corral("settings", "gemma", "--threads", "1", "--n-ctx", "1024")
    assert out.returncode == 0, out.stderr
    return "gemma"


def test_one_shot_prints_only_the_reply(corral, gemma_name):
    out = corral("chat", gemma_name, "What is the capital of France?", "--max-tokens", "16", "--temperature", "0")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() and out.stdout.endswith("\n")
    assert out.stderr == ""  # llama.cpp's own log stays out of the way
    again = corral("chat", gemma_name, "What is the capital of France?", "--max-tokens", "16", "--temperature", "0")
    assert again.stdout == out.stdout


def test_interactive_without_prompt_keeps_the_conversation(corral, gemma_name):
    out = corral("chat", gemma_name, "--max-tokens", "8", "--seed", "1", input="Hello!\nAnd again?\n\n")
    assert out.returncode == 0, out.stderr
    turns = out.stdout.split(">>> ")
    assert len(turns) == 4  # two exchanges, then the empty line that ends the chat
    assert turns[1].strip() and turns[2].strip()
    assert "an empty line or Ctrl-D ends the chat" in out.stderr


def test_settings_accept_llama_options_and_bad_ones_are_one_line(corral, gemma_name):
    out = corral("settings", gemma_name, "--set", "chat_template=chatml", "--set", "cache_type_k=q8_0")
    assert out.returncode == 0, out.stderr
    out = corral("settings", gemma_name, "--set", "cache_type_v=q4_0", "--set", "flash_attn=false")
    assert out.returncode == 0, out.stderr
    chat = corral("chat", gemma_name, "Hi", "--max-tokens", "4")
    assert chat.returncode != 0 and chat.stdout == ""
    assert chat.stderr.strip().splitlines() == [
        "Error: gemma: cache_type_v=q4_0 needs flash attention; "
        "corral settings gemma --set flash_attn=true (or cache_type_v=f16)"
    ]
    unset = [arg for name in ("cache_type_v", "cache_type_k", "chat_template", "flash_attn") for arg in ("--unset", name)]
    out = corral("settings", gemma_name, *unset)
    assert out.returncode == 0, out.stderr
    unknown = corral("settings", gemma_name, "--set", "n_cxt=4")
    assert unknown.returncode != 0 and "unknown setting 'n_cxt'" in unknown.stderr
    assert "did you mean n_ctx?" in unknown.stderr and f"corral settings {gemma_name}" in unknown.stderr
    listed = corral("settings", gemma_name)
    assert listed.returncode == 0 and "rope_freq_base" in listed.stdout  # the settings listed include the driver's


def test_json_schema_and_tools_print_the_structured_answer(corral, gemma_name, tmp_path):
    import json

    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
              "additionalProperties": False}
    (tmp_path / "city.json").write_text(json.dumps(schema))
    out = corral("chat", gemma_name, "Name the capital of France.", "--json-schema", tmp_path / "city.json",
                 "--max-tokens", "40", "--temperature", "0", "--seed", "0")
    assert out.returncode == 0, out.stderr
    assert set(json.loads(out.stdout)) == {"city"}
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
    (tmp_path / "tools.json").write_text(json.dumps(tools))
    out = corral("chat", gemma_name, "Weather in Paris?", "--tools", tmp_path / "tools.json", "--tool-choice",
                 "get_weather", "--max-tokens", "40", "--temperature", "0", "--seed", "0")
    assert out.returncode == 0, out.stderr
    calls = json.loads(out.stdout)
    assert calls[0]["name"] == "get_weather" and isinstance(calls[0]["arguments"]["city"], str)
