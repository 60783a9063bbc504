"""``corral pull`` through a running server: the real CLI in a subprocess finds the server this test runs
(in this process, its state file written so ``connect()`` finds it), and the pull becomes one of the
server's jobs. The fake hub (tests/fakehub) counts what it sends, so a resume is shown by what is not
sent again. Without a server, or with ``--local``, the pull runs in the CLI's process as before.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from corral.errors import IntegrityError, NotFound
from fakehub import CHAT, MMPROJ, Q8
from fakehub.fixtures import Corral, corral, hub, hub_server, one_error_line, sha256, wait_for  # noqa: F401

corral_huggingface = pytest.importorskip("corral_huggingface")
httpx = pytest.importorskip("httpx")

#: Slow enough to interrupt mid-file, quick enough for a test.
RATE = 400_000
MODEL = "corral-test/tiny-chat-GGUF:Q8_0"


@pytest.fixture
def server(corral, hub, monkeypatch):
    """The server for the ``corral`` fixture's library, with the Hugging Face plugin, at the fake hub."""
    with hub_server(monkeypatch, hub, corral.home, Path(corral.env["CORRAL_HOME"]), state=True) as running:
        yield running


def jobs(server) -> list[dict]:
    return httpx.get(server.url + "/corral/pulls", timeout=30).json()["pulls"]


def test_pull_goes_through_the_server_and_answers_as_a_local_pull(server, corral, hub, tmp_path):
    through = corral.json("pull", CHAT, "--quant", "Q8_0")
    (job,) = jobs(server)
    assert job["state"] == "done" and [s["state"] for s in job["steps"]] == ["done"] * 4
    assert [m["name"] for m in job["models"]] == [MODEL]
    (model,) = corral.json("ls")
    assert model["name"] == MODEL and sha256(model["path"]) == hub.entry(CHAT, Q8).sha256
    assert hub.bytes_served(CHAT) == hub.entry(CHAT, Q8).size + hub.entry(CHAT, MMPROJ).size

    # The same pull in its own process, into another library: the same document.
    home = tmp_path / "elsewhere"
    home.mkdir()
    alone = Corral(hub.env(dict(os.environ), home=home), home)
    local = alone.json("pull", CHAT, "--quant", "Q8_0")
    assert set(through) == set(local)
    for key in ("source", "repo", "revision", "commit", "files", "fetched", "reused", "resumed", "existing",
                "loras", "offers"):
        assert through[key] == local[key], key
    assert [Path(p).name for p in through["paths"]] == [Path(p).name for p in local["paths"]]
    (ours,), (theirs,) = through["models"], local["models"]
    assert set(ours) == set(theirs)
    for key in ("name", "category", "format", "facts", "size_bytes"):
        assert ours[key] == theirs[key], key
    assert ours["id"] == model["id"]


def test_the_human_output_and_progress_lines(server, corral):
    out = corral.ok("pull", CHAT, "--quant", "Q8_0", env={"CI": "true"})
    assert f"Pulled {CHAT} from huggingface" in out.stdout and "2 file(s)" in out.stdout
    assert f"Added {MODEL} (multimodal, gguf, mmproj {MMPROJ})" in out.stdout
    again = corral.ok("pull", CHAT, "--quant", "Q8_0")
    assert f"Already in the library: {MODEL}" in again.stdout and "2 already here" in again.stdout
    assert [j["state"] for j in jobs(server)] == ["done", "done"]


def test_offline_through_the_server(server, corral, hub):
    one_error_line(corral("pull", CHAT, "--quant", "Q8_0", "--offline"), "offline", "not in the Hugging Face cache")
    corral.ok("pull", CHAT, "--quant", "Q8_0")
    served = hub.bytes_served()
    again = corral.json("pull", CHAT, "--quant", "Q8_0", "--offline")
    assert again["fetched"] == 0 and [m["name"] for m in again["existing"]] == [MODEL]
    assert hub.bytes_served() == served
    assert [j["offline"] for j in sorted(jobs(server), key=lambda j: j["created"])] == [False, True]


def test_a_failed_job_is_the_local_pulls_error_and_adds_nothing(server, corral, hub):
    hub.bad_sha(CHAT, Q8)
    failed = corral("pull", CHAT, "--quant", "Q8_0", "--no-mmproj")
    one_error_line(failed, Q8, "sha256", "does not match", "nothing was added")
    assert failed.returncode == IntegrityError.exit_code
    (job,) = jobs(server)
    assert job["state"] == "failed" and job["error_code"] == "integrity_error"
    assert corral.json("ls") == []

    missing = corral("pull", CHAT, "--file", "nope.gguf")
    one_error_line(missing, "nope.gguf")
    assert missing.returncode == NotFound.exit_code
    as_json = corral("pull", CHAT, "--file", "nope.gguf", "--json")
    assert json.loads(as_json.stdout)["error"]["code"] == "not_found"
    assert len(jobs(server)) == 1 and corral.json("ls") == []


def test_ctrl_c_pauses_the_servers_job_and_the_same_command_resumes_it(server, corral, hub):
    size = hub.entry(CHAT, Q8).size
    hub.throttle(CHAT, Q8, RATE)
    proc = corral.popen("pull", CHAT, "--quant", "Q8_0", "--no-mmproj")
    running = wait_for(lambda: [j for j in jobs(server) if j["done"] > 300_000], what="bytes to arrive")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Paused after 0 of 1 files" in err and "Run the same command again to resume" in err
    assert "Traceback" not in err
    (job,) = jobs(server)
    assert job["id"] == running[0]["id"] and job["state"] == "paused"
    (part,) = list(corral.home.rglob("*.part"))
    kept = part.stat().st_size
    assert 300_000 <= kept < size
    assert corral.json("ls") == []

    hub.throttle(CHAT, Q8, None)
    hub.state.served.clear()
    resumed = corral.json("pull", CHAT, "--quant", "Q8_0", "--no-mmproj")
    (job,) = jobs(server)  # the paused job went on; no second one
    assert job["id"] == running[0]["id"] and job["state"] == "done"
    assert hub.bodies(CHAT, Q8) == [(kept, size - kept)]  # only the missing bytes
    assert resumed["resumed"] == [Q8] and resumed["fetched"] == size - kept
    assert [m["name"] for m in resumed["models"]] == [MODEL]
    assert sha256(resumed["models"][0]["path"]) == hub.entry(CHAT, Q8).sha256


def test_local_pulls_in_the_commands_own_process(server, corral, hub):
    result = corral.json("pull", CHAT, "--quant", "Q8_0", "--local")
    assert jobs(server) == []
    assert [m["name"] for m in result["models"]] == [MODEL]
    assert [m["name"] for m in corral.json("ls")] == [MODEL]


def test_run_pull_downloads_through_the_server_too(server, corral, hub):
    # The server here has no GGUF driver: the chat after the pull is refused, the pull was the server's.
    ran = corral("run", CHAT, "Hi", "--pull", "--quant", "Q8_0", "--max-tokens", "2")
    assert ran.returncode != 0 and f"Pulled {CHAT}" in ran.stderr
    assert "Error: chat needs the corral-llamacpp" in ran.stderr and "Traceback" not in ran.stderr
    (job,) = jobs(server)
    assert job["state"] == "done" and job["repo"] == CHAT
    assert [m["name"] for m in corral.json("ls")] == [CHAT]


def test_a_destination_the_server_may_not_write_names_local(server, corral, tmp_path):
    refused = corral("pull", CHAT, "--quant", "Q8_0", "--dest", tmp_path / "d")
    one_error_line(refused, "outside the allowed folders", "--local")
    assert jobs(server) == []


# --- the watch alone: job views in, meter calls out -------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def __getattr__(self, name):
        return lambda *args: self.calls.append((name, *args))


def view(**fields) -> dict:
    base = {"id": "j", "state": "running", "files": ["a", "b"], "sizes": [10, 20], "total": 30, "done": 0,
            "fetched": 0, "file": None, "landed": [], "notes": []}
    return {**base, **fields}


def test_the_watch_makes_the_calls_of_a_local_pull():
    from corral.cli.server_pull import JobWatch, new_notes

    meter = Recorder()
    watch = JobWatch(meter, view(state="queued", notes=["old"]))
    watch.update(view(state="queued", notes=["old"]))
    assert meter.calls == []
    watch.update(view(done=4, fetched=0, file="a", notes=["old", "Resuming a at 4 B of 10 B"]))
    watch.update(view(done=25, fetched=21, file="b", landed=[{"name": "a", "fetched": 6, "reused": False}]))
    watch.update(view(state="done", done=30, fetched=26, file="b",
                      landed=[{"name": "a", "fetched": 6, "reused": False},
                              {"name": "b", "fetched": 20, "reused": False}]))
    watch.end()
    assert meter.calls == [
        ("begin", 2, 30, 4), ("note", "Resuming a at 4 B of 10 B"), ("start_file", "a", 10, 0),
        ("advance", 21), ("end_file", "a", 6, False), ("start_file", "b", 20, 0),
        ("advance", 5), ("end_file", "b", 20, False), ("end",),
    ]
    assert new_notes(["x", "y", "z"], ["y", "z", "w"]) == ["w"]
    assert new_notes([], ["a"]) == ["a"] and new_notes(["a"], ["a"]) == []


class SlowServer:
    """A client whose server takes a while to list the repository."""

    url = "http://127.0.0.1:1"

    def __init__(self) -> None:
        self.asked: list[str] = []

    def post(self, path, body):
        import time

        self.asked.append(path)
        if path == "/corral/pulls":
            time.sleep(0.5)
            return view(state="queued")
        return view(state="paused")


def test_ctrl_c_while_the_server_lists_pauses_the_job_it_queues():
    import _thread
    import threading

    from corral.cli.server_pull import pull_through
    from corral.errors import Paused

    client = SlowServer()
    threading.Timer(0.1, _thread.interrupt_main).start()
    with pytest.raises(Paused, match="paused after 0 of 2 files; pull j on the server"):
        pull_through(client, CHAT, Recorder(), quant="Q8_0")
    assert client.asked == ["/corral/pulls", "/corral/pulls/j/pause"]
