"""Runner processes: each loaded model in a process of its own, behind the runtime's executor seam.

The frame protocol on its own; a test driver (tests/runner_plugins.py) that crashes, hangs or streams on
cue, run through the runtime and the HTTP server with the official openai client; and the real thing:
llama.cpp aborting on a broken GGUF inside `corral serve` while the real MiniLM keeps answering.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import struct
import threading
import time
from pathlib import Path

import pytest

import plugins_for_tests as tp
import runner_plugins
from corral.errors import Conflict, InvalidRequest, RunnerFailed, TimedOut
from corral.records import ChatResult
from corral.runtime import Runtime
from corral.runtime.executor import InProcess, RunnerProcesses, describe_exit, log_tail
from corral.runtime.wire import MAX_FRAME, Channel, WireError, decode, decode_error, encode, encode_error
from factories import write_tiny_gguf

psutil = pytest.importorskip("psutil")

WAIT = 60  # seconds any wait here may take before it counts as a hang


def say(content: str) -> list[dict]:
    return [{"role": "user", "content": content}]


def wait_until(condition, what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting: {what}")
        time.sleep(0.02)


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


# --- the frame protocol --------------------------------------------------------------------------------


def test_values_cross_the_wire_as_plain_data():
    import numpy as np
    from PIL import Image

    from corral.tools import Delta, TokenLogprob, ToolCall, ToolCallDelta

    values = [
        ChatResult(text="hi", finish_reason="tool_calls", prompt_tokens=3, tool_calls=(ToolCall("c1", "f", "{}"),),
                   logprobs=(TokenLogprob("hi", -0.5, (104, 105), (("ho", -1.5),)),)),
        Delta(content="a", tool_calls=(ToolCallDelta(0, "c1", "f", "{"),)),
        [(2, 0.5), (0, 0.25)],
        {"__corral__": "a user's key", 3: "not a string key", "nested": {"p": Path("/tmp/x")}},
        b"\x00\xff", float("inf"), None, True,
    ]
    data = json.loads(json.dumps(encode(values)))  # what JSON carries is all there is
    assert decode(data) == values
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    back = decode(json.loads(json.dumps(encode(array))))
    assert back.dtype == np.float32 and back.shape == (3, 4) and (back == array).all()
    assert decode(encode(np.float32(0.5))) == 0.5
    image = Image.new("RGB", (5, 2), (1, 2, 3))
    again = decode(json.loads(json.dumps(encode(image))))
    assert again.size == (5, 2) and again.mode == "RGB" and again.getpixel((4, 1)) == (1, 2, 3)
    with pytest.raises(WireError, match="cannot cross"):
        encode(object())
    with pytest.raises(WireError, match="cannot cross"):
        encode(np.array([object()]))
    for bad in ({"__corral__": "pickle", "data": "gASV"}, {"__corral__": "record", "type": "Model", "fields": {}},
                {"__corral__": "ndarray", "dtype": "object", "shape": [1], "data": ""}):
        with pytest.raises(WireError):
            decode(bad)


def test_errors_cross_as_their_class_or_a_runner_failure():
    from corral.errors import QueueFull

    full = QueueFull("x is busy")
    full.retry_after = 7
    back = decode_error(json.loads(json.dumps(encode_error(full))), "x")
    assert type(back) is QueueFull and str(back) == "x is busy" and back.retry_after == 7

    class PluginError(InvalidRequest):  # a plugin's own class: the nearest core class arrives
        pass

    assert type(decode_error(encode_error(PluginError("nope")), "x")) is InvalidRequest
    bug = decode_error(encode_error(ZeroDivisionError("division by zero")), "gemma")
    assert isinstance(bug, RunnerFailed) and str(bug) == "gemma: the driver failed: ZeroDivisionError: division by zero"


def test_frames_are_bounded_and_checked():
    a, b = socket.socketpair()
    ours, theirs = Channel(a, max_frame=1024), Channel(b, max_frame=1024)
    try:
        ours.send({"op": "x", "text": "é" * 10})
        assert theirs.receive() == {"op": "x", "text": "é" * 10}
        with pytest.raises(WireError, match="over the 1024-byte frame limit"):
            ours.send({"text": "x" * 2000})
        a.sendall(struct.pack(">I", MAX_FRAME + 1))  # a corrupt length is refused before any allocation
        with pytest.raises(WireError, match="over the 1024-byte limit"):
            theirs.receive()
    finally:
        ours.close(), theirs.close()
    for payload, problem in ((b"[1, 2]", "not an object"), (b"{nope", "not JSON")):
        a, b = socket.socketpair()
        a.sendall(struct.pack(">I", len(payload)) + payload)
        with pytest.raises(WireError, match=problem):
            Channel(b).receive()
        a.close(), b.close()
    a, b = socket.socketpair()
    a.sendall(struct.pack(">I", 100) + b'{"cut": ')
    a.close()
    with pytest.raises(WireError, match="closed 8 bytes into a 100-byte read"):
        Channel(b).receive()
    b.close()


def test_exit_descriptions_and_log_tails(tmp_path):
    assert describe_exit(-9).startswith("was killed (SIGKILL")
    assert describe_exit(-6).startswith("aborted (SIGABRT")
    assert describe_exit(3) == "exited with status 3"
    log = tmp_path / "runner.log"
    log.write_text("loading\nops.cpp:1: GGML_ASSERT(x) failed\nops.cpp:1: GGML_ASSERT(x) failed\n"
                   "Fatal Python error: Aborted\n\nThread 0x1 (most recent call first):\n  File \"a.py\", line 1\n")
    assert log_tail(log) == ["loading", "ops.cpp:1: GGML_ASSERT(x) failed", "Fatal Python error: Aborted"]
    assert log_tail(tmp_path / "missing.log") == []


# --- the runtime over runner processes (test driver) ----------------------------------------------------


@pytest.fixture
def script_host():
    from corral.plugins import build_host, set_host

    tp.recorder_plugin.events.clear()
    host = build_host(entry_points=False, plugins=[runner_plugins.script_plugin, tp.recorder_plugin])
    set_host(host)
    yield host
    set_host(None)


@pytest.fixture
def slib(home, script_host, tmp_path):
    from corral.library import open_library

    library = open_library(home, script_host)
    for name in ("s", "unloadable"):
        library.import_path(write_tiny_gguf(tmp_path / name / f"{name}.gguf"), name=name)
    yield library
    library.store.close()


@pytest.fixture
def executor(tmp_path):
    ex = RunnerProcesses(log_dir=tmp_path / "runners", cancel_grace=1.0)
    yield ex
    ex.close()


@pytest.fixture
def rt(slib, executor):
    runtime = Runtime(slib, executor=executor, drain_timeout=WAIT)
    yield runtime
    runtime.close()


def test_a_model_in_its_runner_answers_every_task_like_in_process(rt, slib, executor):
    entry = rt.load("s")
    pid = entry.handle.pid
    assert pid != os.getpid() and "corral.runtime.runner" in psutil.Process(pid).cmdline()
    assert rt.call("s", "chat", say("hi")) == ChatResult(text=f"pid {pid}", prompt_tokens=1, completion_tokens=2)
    stream = rt.stream("s", "chat", say("slow 3"))
    pieces = [next(stream) for _ in range(3)]
    with pytest.raises(StopIteration):
        next(stream)
    assert pieces == ["0 ", "1 ", "2 "]
    from corral.driver import drain

    assert drain(entry.handle.chat(say("a b"), stream=True)) == (
        ["a ", "b "], ChatResult(text="", finish_reason="length", prompt_tokens=1, completion_tokens=1))
    vectors = entry.handle.embed(["abc", "d"])
    assert vectors.tolist() == [[3.0, 0.5], [1.0, 0.5]]
    images = entry.handle.imagine("red")
    assert [(i.mode, i.size) for i in images] == [("RGB", (4, 3)), ("L", (2, 2))]
    assert images[0].getpixel((0, 0)) == (255, 0, 0)
    samples, rate = entry.handle.speak("hi")
    assert rate == 24000 and samples.tolist()[0] == -1.0 and len(samples) == 8
    assert entry.handle.whoami()["pid"] == pid  # a public method of the driver's handle, called remotely
    # A Corral error keeps its class; any other error names the model and the driver's exception.
    with pytest.raises(InvalidRequest, match="bad is not a thing"):
        rt.call("s", "chat", say("bad"))
    with pytest.raises(RunnerFailed, match="^s: the driver failed: ZeroDivisionError: a bug in the driver"):
        rt.call("s", "chat", say("bug"))
    assert rt.call("s", "chat", say("hi")).text == f"pid {pid}"  # the runner lives on after both
    # Memory is the runner's own resident memory, recorded for `corral fit`.
    assert entry.memory["ram"] > 10 * 1024**2 and entry.memory["vram"] == 0
    shown = next(i for i in rt.ps() if i.name == "s").ram  # measured now, not at the load
    assert abs(shown - psutil.Process(pid).memory_info().rss) < shown / 4
    # The lease lasts as long as the runner: the model cannot be deleted meanwhile.
    assert slib.store.loaded_ids() == {entry.model.id}
    with pytest.raises(Conflict):
        slib.remove("s")
    rt.unload("s")
    assert gone(pid) and executor.runners() == []
    assert slib.store.loaded_ids() == set()
    assert ("unloaded", "s") in tp.recorder_plugin.events


def test_a_load_that_fails_in_the_runner_is_the_drivers_error(rt, slib, executor):
    with pytest.raises(InvalidRequest, match="unloadable: this test model refuses to load"):
        rt.load("unloadable")
    assert rt.ps() == [] and executor.runners() == [] and slib.store.loaded_ids() == set()


def test_a_runner_killed_mid_request_fails_it_and_the_next_request_loads_again(rt, slib):
    entry = rt.load("s")
    pid = entry.handle.pid
    stream = rt.stream("s", "chat", say("slow 200"))
    assert next(stream) == "0 "
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(RunnerFailed) as err:
        list(stream)
    message = str(err.value)
    assert message.startswith(f"s: its runner process (pid {pid}) was killed (SIGKILL")
    assert "loaded again on the next request" in message
    wait_until(lambda: rt.find("s") is None, "the dead model marked unloaded")
    wait_until(lambda: slib.store.loaded_ids() == set(), "its lease released")
    assert rt.call("s", "chat", say("hi")).text != f"pid {pid}"  # loaded again, in a new runner


def test_a_runner_that_aborts_names_the_signal_and_its_last_log_lines(rt):
    pid = rt.load("s").handle.pid
    with pytest.raises(RunnerFailed) as err:
        rt.call("s", "chat", say("abort"))
    message = str(err.value)
    assert message.startswith(f"s: its runner process (pid {pid}) aborted (SIGABRT")
    assert "its log ends: Fatal Python error: Aborted" in message and "s-" in message  # and where the log is
    wait_until(lambda: rt.find("s") is None, "the model marked unloaded")


def test_a_backend_that_sleeps_forever_is_cancelled_at_its_time_limit(rt, slib):
    slib.update_settings("s", {"request_timeout": 1})
    pid = rt.load("s").handle.pid
    started = time.monotonic()
    with pytest.raises(TimedOut, match=r"^s: the request ran past its time limit of 1 s and was cancelled; its "
                                        r"runner did not stop it and was ended"):
        rt.call("s", "chat", say("sleep"))
    assert time.monotonic() - started < WAIT
    wait_until(lambda: gone(pid), "the runner that ignored the cancel killed")
    wait_until(lambda: rt.find("s") is None, "the model marked unloaded")
    # A stream that stops producing meets the same limit after its first piece.
    stream = rt.stream("s", "chat", say("sleep mid"))
    assert next(stream) == "first "
    with pytest.raises(TimedOut):
        next(stream)
    assert rt.call("s", "chat", say("hi")).text.startswith("pid ")


def test_keep_alive_ends_the_runner(slib, executor):
    from corral.runtime.watchdog import Watchdog

    runtime = Runtime(slib, executor=executor, keep_alive=0)
    try:
        pid = runtime.load("s").handle.pid
        assert Watchdog(runtime, memory=lambda: 0.0).tick() == ["s"]
        assert gone(pid) and runtime.ps() == [] and slib.store.loaded_ids() == set()
    finally:
        runtime.close()


def test_in_process_is_the_drivers_own_handle(slib):
    runtime = Runtime(slib)
    try:
        assert isinstance(runtime.executor, InProcess)
        assert type(runtime.load("s").handle) is runner_plugins.ScriptHandle
        assert runtime.call("s", "chat", say("hi")).text == f"pid {os.getpid()}"
    finally:
        runtime.close()


def test_gpu_vendor_memory_per_process_is_guarded_without_a_gpu():
    pynvml = pytest.importorskip("pynvml")
    corral_nvidia = pytest.importorskip("corral_nvidia")
    from corral.runtime.executor import process_vram

    found = corral_nvidia.NvidiaVendor().process_memory([os.getpid()])
    try:
        pynvml.nvmlInit()
        pynvml.nvmlShutdown()
        has_gpu = True
    except pynvml.NVMLError:
        has_gpu = False
    assert (found is None) if not has_gpu else isinstance(found, dict)
    assert process_vram([corral_nvidia.NvidiaVendor()], [os.getpid()]) in ((None,) if not has_gpu else (None, 0))


# --- over HTTP, with the openai client ------------------------------------------------------------------


@pytest.fixture
def server(rt):
    from corral.server.serve import ServerThread

    with ServerThread(rt) as srv:
        yield srv


def test_sigkill_mid_stream_is_an_error_event_and_waiting_requests_get_503(server, rt):
    openai = pytest.importorskip("openai")
    httpx = pytest.importorskip("httpx")
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=WAIT)
    pid = rt.load("s").handle.pid
    stream = client.chat.completions.create(model="s", messages=say("slow 300"), stream=True)
    chunks = iter(stream)
    assert next(chunks).choices[0].delta.content == "0 "
    waiting: dict = {}
    behind = threading.Thread(target=lambda: waiting.setdefault(
        "answer", httpx.post(server.url + "/v1/chat/completions", json={"model": "s", "messages": say("hi")},
                             timeout=WAIT)))
    behind.start()
    wait_until(lambda: rt.find("s") is not None and rt.find("s").queue.waiting == 1, "a request waiting")
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(openai.APIError, match=rf"s: its runner process \(pid {pid}\) was killed \(SIGKILL"):
        for _ in chunks:
            pass
    behind.join(WAIT)
    answer = waiting["answer"]
    assert answer.status_code == 503 and answer.headers["Retry-After"]
    assert "s stopped: its runner process" in answer.json()["error"]["message"]
    again = client.chat.completions.create(model="s", messages=say("hi"))
    assert again.choices[0].message.content.startswith("pid ") and again.choices[0].message.content != f"pid {pid}"


def test_http_errors_from_a_runner_keep_their_status(server, rt, slib):
    httpx = pytest.importorskip("httpx")

    def chat(content):
        return httpx.post(server.url + "/v1/chat/completions", json={"model": "s", "messages": say(content)},
                          timeout=WAIT)

    slib.update_settings("s", {"request_timeout": 1})  # read at the load the first request makes
    assert chat("bad").status_code == 400
    bug = chat("bug")
    assert bug.status_code == 500 and "ZeroDivisionError" in bug.json()["error"]["message"]
    late = chat("sleep")
    assert late.status_code == 504 and late.json()["error"]["code"] == "timed_out"
    assert chat("hi").status_code == 200


def test_a_client_that_leaves_mid_stream_cancels_the_generation(server, rt):
    httpx = pytest.importorskip("httpx")
    entry = rt.load("s")
    body = {"model": "s", "messages": say("slow 600"), "stream": True}
    with httpx.stream("POST", server.url + "/v1/chat/completions", json=body, timeout=WAIT) as response:
        for line in response.iter_lines():
            if line.startswith("data:"):
                break
    # Cancelled in the runner after the piece in progress, long before its 60 s of pieces.
    wait_until(lambda: entry.queue.idle, "the stream's turn released", timeout=20)
    assert rt.find("s") is entry and not gone(entry.handle.pid)
    assert rt.call("s", "chat", say("hi")).text == f"pid {entry.handle.pid}"


def test_a_client_that_leaves_a_non_streamed_request_cancels_it(server, rt):
    httpx = pytest.importorskip("httpx")
    pid = rt.load("s").handle.pid
    body = {"model": "s", "messages": say("sleep")}  # a backend that never answers by itself
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(server.url + "/v1/chat/completions", json=body, timeout=1.0)  # the client gives up
    # The runner runs nothing else, so the cancel it cannot honour ends it (after its 1 s grace): its
    # memory goes back at once, not after the 3600 s the backend would sleep.
    wait_until(lambda: gone(pid), "the runner of the abandoned request ended", timeout=20)
    wait_until(lambda: rt.find("s") is None, "the model marked unloaded", timeout=20)
    again = httpx.post(server.url + "/v1/chat/completions", json={"model": "s", "messages": say("hi")}, timeout=WAIT)
    assert again.status_code == 200 and again.json()["choices"][0]["message"]["content"] != f"pid {pid}"


def test_an_abandoned_call_beside_others_only_tells_its_runner(rt):
    from corral.errors import Cancelled
    from corral.runtime.executor import client_left

    runner = rt.load("s").handle.runner
    def other_client():
        with pytest.raises(RunnerFailed):  # its runner is ended at the end of the test
            runner.call("chat", [say("sleep")], {}, None)

    busy = threading.Thread(target=other_client, daemon=True)
    busy.start()  # another client's call, still running
    wait_until(lambda: len(runner._calls) == 1, "the first call in flight")
    left = threading.Event()
    left.set()  # this call's client is already gone
    client_left.set(left)
    try:
        with pytest.raises(Cancelled, match="the client left"):
            runner.call("chat", [say("hi")], {}, None)
    finally:
        client_left.set(None)
    assert not gone(runner.pid) and runner.alive  # the other call keeps its runner
    runner.kill("the test is over")
    busy.join(WAIT)


# --- the real thing: llama.cpp aborting inside `corral serve` --------------------------------------------


def write_broken_gguf(path: Path) -> Path:
    """A llama GGUF whose 3 heads do not divide its width of 64, each tensor shaped the way llama.cpp
    expects from those numbers (what a broken conversion writes): it loads, and llama.cpp's RoPE asserts
    on the odd head size (21) at the first token."""
    return write_tiny_gguf(path, n_layers=1, n_head=3, n_head_kv=3, context_length=256, file_type=0, name="broken")


@pytest.mark.slow
def test_broken_gguf_aborts_its_runner_while_minilm_keeps_answering(tmp_path, minilm_path):
    httpx = pytest.importorskip("httpx")
    corral_llamacpp = pytest.importorskip("corral_llamacpp")
    corral_st = pytest.importorskip("corral_sentence_transformers")
    from corral.library import open_library
    from corral.testing.hosts import installed_host
    from test_server import start_serve, stop_serve

    home = tmp_path / "home"
    home.mkdir()
    with installed_host(corral_llamacpp, corral_st) as host:
        library = open_library(home, host)
        broken = library.import_path(write_broken_gguf(tmp_path / "broken.gguf"), name="broken").model
        library.update_settings("broken", {"n_ctx": 256, "threads": 1})
        library.import_path(minilm_path, name="minilm")
        library.store.close()
    assert broken.facts.architecture == "llama"  # detection takes it, as it should
    process, info = start_serve(home)
    url = info["url"]
    try:
        def embed():
            response = httpx.post(url + "/v1/embeddings", json={"model": "minilm", "input": ["a cat"],
                                                                  "encoding_format": "float"}, timeout=300)
            assert response.status_code == 200, response.text
            return response.json()["data"][0]["embedding"]

        before = embed()
        for _ in range(2):  # the second request loads the broken model again, in a fresh runner
            answer = httpx.post(url + "/v1/completions", json={"model": "broken", "prompt": "hello world",
                                                               "max_tokens": 4}, timeout=300)
            assert answer.status_code == 500, answer.text
            message = answer.json()["error"]["message"]
            # Corral's llama.cpp driver warms the model up with one token while loading: the abort comes there.
            assert message.startswith("broken: the load failed: its runner process (pid "), message
            assert "aborted (SIGABRT" in message and "GGML_ASSERT(n_dims % 2 == 0) failed" in message
        assert embed() == before
        ps = httpx.get(url + "/corral/ps", timeout=WAIT).json()["models"]
        assert [m["name"] for m in ps] == ["minilm"]
        assert process.poll() is None
    finally:
        log = stop_serve(process, home)
    assert len(re.findall(r"^\S+\s+loaded minilm ", log, re.MULTILINE)) == 1  # one load, never lost
