"""`corral chat` end to end with the real Gemma, in a fresh process as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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

    invoke.env = env
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


def test_piped_stdin_is_the_prompt_and_only_the_answer_is_printed(corral, gemma_name):
    args = ("chat", gemma_name, "--max-tokens", "12", "--temperature", "0")
    piped = corral(*args, input="What is the capital of France?\n")
    assert piped.returncode == 0, piped.stderr
    given = corral(*args, "What is the capital of France?")
    assert piped.stdout == given.stdout and ">>>" not in piped.stdout and piped.stderr == ""
    as_json = corral(*args, "--json", "--verbose", input="What is the capital of France?")
    answer = json.loads(as_json.stdout)
    assert answer["answer"] + "\n" == given.stdout
    assert answer["prompt_tokens"] > 5 and 1 <= answer["completion_tokens"] <= 12
    assert 0 < answer["first_token_s"] <= answer["total_s"]
    assert "tokens/s" in as_json.stderr and "first token" in as_json.stderr
    empty = corral("chat", gemma_name, input="")
    assert empty.returncode != 0 and "no prompt" in empty.stderr


class Terminal:
    """``corral ARGS`` on a pseudo-terminal (stdin, stdout and stderr), as a person at a shell runs it."""

    def __init__(self, env: dict, *args: str) -> None:
        import pty

        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: exec corral with the terminal as its controlling tty
            os.execve(sys.executable, [sys.executable, "-m", "corral", *args], env)
        self.seen = ""

    def send(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def expect(self, text: str, timeout: float = 120) -> str:
        """Read until ``text`` appears after what was already matched; what came before it."""
        import select
        import time

        deadline = time.monotonic() + timeout
        while text not in self.seen:
            left = deadline - time.monotonic()
            assert left > 0, f"no {text!r} in {self.seen[-2000:]!r}"
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                try:
                    chunk = os.read(self.fd, 4096).decode(errors="replace")
                except OSError:  # the child closed the terminal
                    chunk = ""
                assert chunk, f"corral ended before {text!r}: {self.seen[-2000:]!r}"
                self.seen += chunk
        before, _, self.seen = self.seen.partition(text)
        return before

    def wait(self, timeout: float = 60) -> int:
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                os.close(self.fd)
                return os.waitstatus_to_exitcode(status)
            try:
                os.read(self.fd, 4096)
            except OSError:
                pass
            time.sleep(0.05)
        os.kill(self.pid, 9)
        raise AssertionError("corral chat did not end")


def test_interactive_chat_on_a_terminal(corral, gemma_name):
    """Line editing and history, slash commands, Ctrl-C that stops an answer and keeps the session."""
    env = {**corral.env, "TERM": "xterm", "COLUMNS": "200"}
    term = Terminal(env, "chat", gemma_name, "--temperature", "0", "--seed", "1")
    term.expect("/bye or Ctrl-D ends the chat.")
    term.expect(">>> ")
    term.send("/set parameter temprature 0.5\r")
    assert "did you mean temperature" in term.expect(">>> ")
    term.send("/set parameter max_tokens 400\r")
    assert "Set max_tokens to 400." in term.expect(">>> ")
    term.send("Write a very long story about a cat who sails around the world.\r")
    term.expect("world.")  # the echo of the line; then the answer streams
    term.expect(" ")  # some of the answer has come
    term.send("\x03")  # Ctrl-C mid-answer: the answer stops, the session stays
    assert "[stopped]" in term.expect(">>> ", timeout=60)
    term.send("/set parameter max_tokens 4\r")
    term.expect(">>> ")
    term.send("\x1b[A\x1b[A")  # Up twice recalls the story line
    term.expect("sails around the world.")
    term.send("\r")
    answer = term.expect(">>> ")  # a short answer this time, and the prompt again
    assert "[stopped]" not in answer
    term.send("/show\r")
    shown = term.expect(">>> ")
    assert f"model: {gemma_name}" in shown and "max_tokens=4" in shown and "temperature=0.0" in shown
    term.send("/set system You are a sailor.\r")
    assert "Set the system prompt." in term.expect(">>> ")
    term.send("/save gemma-sailor\r")
    assert "Saved gemma-sailor" in term.expect(">>> ")
    term.send("/nope\r")
    assert "Unknown command /nope; /help lists them." in term.expect(">>> ")
    term.send('"""\r')
    term.send("First line\r")
    term.send("second line\r")
    term.send('"""\r')
    term.expect(">>> ")
    term.send("/bye\r")
    assert term.wait() == 0
    history = (Path(corral.env["CORRAL_HOME"]) / "chat_history").read_text()
    assert "Write a very long story about a cat" in history and "/bye" in history
    saved = json.loads(corral("show", "gemma-sailor", "--json").stdout)["model"]
    assert saved["settings"]["system_prompt"] == "You are a sailor."
    assert saved["settings"]["max_tokens"] == 4 and saved["settings"]["temperature"] == 0.0
    assert corral("rm", "gemma-sailor", "--yes").returncode == 0


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
