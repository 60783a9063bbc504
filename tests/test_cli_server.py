"""The background server is explicit, through the real CLI (each command its own process, as a user runs
it) on tiny GGUF models loaded by llama.cpp: `ps` and `unload` never start a server, `load` starts one
only for a model that passes its checks, `stop` / `serve --stop` stop it, `serve --status` and `ps` name
it; `load` says what the load rules unloaded; `rm` names the process holding a model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from corral.server.state import log_path, read_state, state_path
from factories import write_tiny_gguf

pytest.importorskip("corral_llamacpp")
httpx = pytest.importorskip("httpx")

TIMEOUT = 300


class Ran:
    """One CLI run: its exit status and what it wrote."""

    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


@pytest.fixture
def corral(tmp_path, monkeypatch):
    """``corral(*args)`` runs the CLI (in this process, with the llama.cpp plugin; a background server it
    starts is a process of its own) on a library of two tiny chat models."""
    import corral_llamacpp
    from click.testing import CliRunner

    from corral.cli import build_cli
    from corral.testing.hosts import installed_host

    home = tmp_path / "home"
    monkeypatch.setenv("CORRAL_HOME", str(home))
    monkeypatch.setenv("CORRAL_PORT", "0")
    monkeypatch.setenv("CORRAL_LOAD_PLUGINS", "llamacpp")  # the background server's plugins: the same
    for name in ("CORRAL_HOST", "CORRAL_API_KEY", "CORRAL_DISABLE_PLUGINS"):
        monkeypatch.delenv(name, raising=False)

    def run(*args):
        result = CliRunner().invoke(build_cli(), [str(a) for a in args], catch_exceptions=False)
        return Ran(result.exit_code, result.stdout, result.stderr)

    run.home = home
    with installed_host(corral_llamacpp):
        for seed, name in enumerate(("first", "second")):
            path = write_tiny_gguf(tmp_path / name / f"{name}.gguf", seed=seed)
            assert run("import", path, "--name", name).returncode == 0
        yield run
    state = read_state(home)
    if state is not None:  # a failed test must not leave its server behind
        psutil.Process(state.pid).terminate()
        psutil.Process(state.pid).wait(60)


def in_own_process(home: Path, *args: str, **env: str) -> Ran:
    """The CLI as a separate process (what a user's shell runs)."""
    environ = {**os.environ, "CORRAL_HOME": str(home), **env}
    out = subprocess.run([sys.executable, "-m", "corral", *map(str, args)], capture_output=True, text=True,
                         env=environ, timeout=TIMEOUT)
    return Ran(out.returncode, out.stdout, out.stderr)


def ok(result):
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def one_error_line(result, code: int, *fragments: str) -> str:
    assert result.returncode == code, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def no_server(home: Path) -> None:
    assert read_state(home) is None and not state_path(home).exists()
    assert not log_path(home).exists()  # nothing was ever started: the background log is never opened


def test_ps_unload_status_and_stop_never_start_a_server(corral):
    ps = ok(in_own_process(corral.home, "ps"))
    assert ps.stdout.strip() == "No server is running; `corral serve` starts one."
    assert ok(corral("ps")).stdout == ps.stdout
    assert json.loads(ok(corral("ps", "--json")).stdout) == {"server": None, "models": []}
    one_error_line(corral("unload", "first"), 2, "first is not loaded", "no server is running")
    one_error_line(corral("unload", "frist"), 2, "frist")
    assert "Nothing was loaded." in ok(corral("unload", "--all")).stdout
    one_error_line(corral("serve", "--status"), 12, "no server is running")
    status = corral("serve", "--status", "--json")
    assert status.returncode == 12 and json.loads(status.stdout)["error"]["code"] == "server_unavailable"
    assert ok(corral("stop")).stdout.strip() == "No server is running."
    assert json.loads(ok(corral("serve", "--stop", "--json")).stdout) == {"stopped": None}
    no_server(corral.home)


def test_a_load_that_fails_its_checks_starts_no_server(corral, tmp_path):
    one_error_line(corral("load", "frist"), 2, "frist")
    failed = corral("load", "frist", "--json")
    assert failed.returncode == 2 and json.loads(failed.stdout)["error"]["exit_code"] == 2
    one_error_line(corral("load", "first", "--set", "no_such_setting=1"), 9, "no_such_setting")
    one_error_line(corral("load", "first", "--lora", "ghost"), 2, "ghost")
    ok(corral("import", write_tiny_gguf(tmp_path / "pic.gguf", seed=2), "--name", "pic", "--category", "image"))
    one_error_line(corral("load", "pic"), 6, "pip install corral-diffusers")  # no image plugin here
    no_server(corral.home)


def test_load_says_what_it_unloads_ps_names_the_server_and_stop_stops_it(corral):
    loaded = ok(corral("load", "first"))
    assert loaded.stdout.startswith("Loaded first (chat, ")
    state = read_state(corral.home)
    assert state is not None  # started in the background, after the checks passed
    ps = ok(corral("ps")).stdout.splitlines()
    assert ps[0].startswith(f"Server pid {state.pid} at {state.address} ({state.url}), started ")
    assert ps[1].split()[:3] == ["NAME", "CATEGORY", "DRIVER"] and ps[2].split()[0] == "first"
    listed = json.loads(ok(corral("ps", "--json")).stdout)
    assert listed["server"]["pid"] == state.pid and listed["server"]["address"] == state.address
    assert abs(listed["server"]["started"] - state.started) < 5
    assert [m["name"] for m in listed["models"]] == ["first"]
    assert listed["models"][0]["ram_bytes"] > 0 and "ram" not in listed["models"][0]

    # A second chat model replaces the first, and the load says so (CLI text, --json, HTTP route).
    second = ok(corral("load", "second")).stdout.splitlines()
    assert second[0] == "Unloaded first (one chat model at a time)."
    assert second[1].startswith("Loaded second (chat, ")
    back = json.loads(ok(corral("load", "first", "--json")).stdout)
    assert [(u["name"], u["category"], u["reason"]) for u in back["unloaded"]] == [
        ("second", "chat", "one chat model at a time")]
    answer = httpx.post(state.url + "/corral/load", json={"model": "second"}, timeout=TIMEOUT).json()
    assert answer["model"]["name"] == "second" and [u["name"] for u in answer["unloaded"]] == ["first"]
    again = json.loads(ok(corral("load", "second", "--json")).stdout)
    assert again["reused"] is True and again["unloaded"] == []

    # rm names the process that holds the model (the server).
    line = one_error_line(corral("rm", "second", "--yes"), 3, "second is loaded by", f"process {state.pid}",
                          "corral serve", "corral unload second")
    assert "Traceback" not in line

    status = ok(corral("serve", "--status")).stdout
    assert f"pid {state.pid}" in status and "Loaded: second." in status
    assert json.loads(ok(corral("serve", "--status", "--json")).stdout)["models"] == ["second"]

    stopped = ok(corral("stop"))
    assert stopped.stdout.strip() == f"Stopped the server (pid {state.pid}, {state.address}); its models are unloaded."
    assert read_state(corral.home) is None and not psutil.pid_exists(state.pid)
    assert "unloaded second" in log_path(corral.home).read_text()  # gracefully: the model was unloaded first
    assert ok(corral("ps")).stdout.startswith("No server is running")
    ok(corral("rm", "second", "--yes"))


def test_serve_stop_stops_a_server_started_in_the_foreground(corral):
    log = open(corral.home / "fg.log", "wb")
    env = {**os.environ, "CORRAL_HOME": str(corral.home)}
    process = subprocess.Popen([sys.executable, "-m", "corral", "serve", "--port", "0"], stdout=log,
                               stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + TIMEOUT
        while read_state(corral.home) is None:
            assert process.poll() is None and time.monotonic() < deadline, (corral.home / "fg.log").read_text()
            time.sleep(0.05)
        assert "Loaded first" in ok(corral("load", "first")).stdout  # uses it: no second server
        assert read_state(corral.home).pid == process.pid
        stopped = json.loads(ok(in_own_process(corral.home, "serve", "--stop", "--json")).stdout)["stopped"]
        assert stopped["pid"] == process.pid
        assert process.wait(TIMEOUT) == 0  # a clean exit
    finally:
        if process.poll() is None:
            process.kill()
        log.close()
    assert "unloaded first" in (corral.home / "fg.log").read_text()


def test_rm_names_the_process_holding_the_model_and_clears_dead_ones(corral):
    from corral.store import Store

    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    store = Store(corral.home / "library.db")
    try:
        model_id = store.get_model("first").id
        store.acquire_lease(model_id, holder.pid)
        store.acquire_lease(model_id, gone.pid)
        one_error_line(corral("rm", "first", "--yes"), 3, "first is loaded by", f"process {holder.pid}",
                       "-c import time; time.sleep(120)", "end that process")
        assert [pid for pid, _ in store.lease_holders(model_id)] == [holder.pid]  # the dead one is cleared
        holder.kill()
        holder.wait()
        removed = ok(corral("rm", "first", "--yes"))  # only leases of processes gone: cleared, then removed
        assert "Removed first" in removed.stdout
        assert store.lease_holders(model_id) == []
    finally:
        if holder.poll() is None:
            holder.kill()
        store.close()
