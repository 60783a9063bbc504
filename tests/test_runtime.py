"""The runtime's load rules, request queue and memory watchdog, with test drivers whose requests a test
can hold open (the drivers stand in for a third-party plugin; the backends are tested in their plugins)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

import plugins_for_tests as tp
from corral import hookimpl
from corral.driver import Driver, LoadedModel
from corral.errors import (
    Busy, Conflict, Incompatible, InsufficientMemory, InvalidSetting, NotFound, PluginMissing, QueueFull,
)
from corral.records import Category, ChatResult, Format, SettingSpec
from corral.runtime import Runtime
from corral.runtime.queue import QueueClosed, RequestQueue
from corral.runtime.watchdog import Watchdog, parse_duration
from factories import write_lora_gguf, write_mmproj_gguf, write_tiny_gguf
from factories_weights import write_cross_encoder

WAIT = 30  # seconds any wait in these tests may take before it counts as a hang


class Probe:
    """What the test drivers did, and the gates that hold their loads and requests open."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.load_gate = threading.Event()
        self.load_gate.set()
        self.load_entered = threading.Event()
        self.mid_gate = threading.Event()  # holds a stream after its first piece
        self.mid_gate.set()
        self.running = 0
        self.most_running = 0

    def work(self) -> None:
        with self.lock:
            self.running += 1
            self.most_running = max(self.most_running, self.running)
        self.entered.set()
        try:
            assert self.gate.wait(WAIT), "a test left the gate closed"
        finally:
            with self.lock:
                self.running -= 1

    def count(self, kind: str, name: str | None = None) -> int:
        return sum(1 for k, n in self.events if k == kind and (name is None or n == name))


PROBE = Probe()


class ProbeHandle(LoadedModel):
    def chat(self, messages, *, stream=False, **params):
        text = f"{self.model.name} heard {messages[-1]['content']}"
        return self._answer(text, stream, params)

    def complete(self, prompt, *, stream=False, **params):
        return self._answer(f"{prompt} and so on", stream, params)

    def _answer(self, text, stream, params):
        if text.endswith("crash"):
            raise RuntimeError("a bug in the driver")
        if stream:
            return self._pieces(text)
        PROBE.work()
        return ChatResult(text=text, prompt_tokens=3, completion_tokens=len(text.split()))

    def _pieces(self, text):
        PROBE.work()
        for i, word in enumerate(text.split(" ")):
            if i == 1:
                assert PROBE.mid_gate.wait(WAIT), "a test left the mid-stream gate closed"
            yield word + " "

    def embed(self, texts, **params):
        PROBE.work()
        return [[float(len(t)), 1.0, 0.5] for t in texts]

    def rerank(self, query, documents, **params):
        PROBE.work()
        scores = [(i, float(len(set(query.split()) & set(d.split())))) for i, d in enumerate(documents)]
        return sorted(scores, key=lambda s: -s[1])

    def memory(self):
        return {"ram": 123_000, "vram": 0}

    def unload(self):
        PROBE.events.append(("unload", self.model.name))


class ProbeDriver(Driver):
    name = "probe"
    distribution = "corral-probe"
    categories = frozenset({Category.CHAT, Category.MULTIMODAL, Category.TEXT_GENERATION})
    formats = frozenset({Format.GGUF})
    max_loras = 1
    settings = (SettingSpec("probe_level", int, "a driver setting", 1, minimum=0),)

    def load(self, model, settings, loras=()):
        PROBE.load_entered.set()
        assert PROBE.load_gate.wait(WAIT)
        PROBE.events.append(("load", model.name))
        return ProbeHandle(model, settings, loras)


class ProbeEncoderDriver(ProbeDriver):
    name = "probe-encoder"
    categories = frozenset({Category.EMBEDDING, Category.RERANK})
    formats = frozenset({Format.HF_DIR, Format.SAFETENSORS})
    max_loras = 0


class probe_plugin:  # noqa: N801
    @staticmethod
    @hookimpl
    def register_drivers(register):
        register(ProbeDriver)
        register(ProbeEncoderDriver)


@pytest.fixture
def probe():
    global PROBE
    PROBE = Probe()
    yield PROBE
    PROBE.gate.set()
    PROBE.load_gate.set()
    PROBE.mid_gate.set()


@pytest.fixture
def probe_host(probe):
    from corral.plugins import build_host, set_host

    tp.recorder_plugin.events.clear()
    host = build_host(entry_points=False, plugins=[probe_plugin, tp.recorder_plugin])
    set_host(host)
    yield host
    set_host(None)


@pytest.fixture
def lib(home, probe_host):
    from corral.library import open_library

    library = open_library(home, probe_host)
    yield library
    library.store.close()


@pytest.fixture
def runtime(lib):
    rt = Runtime(lib, drain_timeout=WAIT)
    yield rt
    PROBE.gate.set()
    rt.close()


@pytest.fixture
def models(lib, tmp_path, minilm_path):
    """Chat a and b, a multimodal m, a text-generation t, an embedding e and a rerank r."""
    def gguf(name, **kw):
        return lib.import_path(write_tiny_gguf(tmp_path / name / f"{name}.gguf"), name=name, **kw).model

    mm_dir = tmp_path / "m"
    write_tiny_gguf(mm_dir / "m.gguf")
    write_mmproj_gguf(mm_dir / "mmproj-m.gguf")
    found = {
        "a": gguf("a"),
        "b": gguf("b"),
        "t": gguf("t", category=Category.TEXT_GENERATION),
        "m": lib.import_path(mm_dir / "m.gguf", name="m").model,
        "e": lib.import_path(minilm_path, name="e").model,
        "r": lib.import_path(write_cross_encoder(tmp_path / "r"), name="r").model,
    }
    assert found["m"].category == Category.MULTIMODAL
    assert (found["e"].category, found["r"].category) == (Category.EMBEDDING, Category.RERANK)
    return found


def loaded_names(runtime) -> set[str]:
    return {info.name for info in runtime.ps()}


def in_thread(fn, *args, **kwargs):
    """Run ``fn`` in a thread; returns (thread, result box)."""
    box: dict = {}

    def target():
        try:
            box["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # handed to the test
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, box


# --- load rules ------------------------------------------------------------------------------------------


def test_second_chat_model_unloads_the_first(runtime, models, lib):
    runtime.load("a")
    assert loaded_names(runtime) == {"a"}
    runtime.load("b")
    assert loaded_names(runtime) == {"b"}
    assert PROBE.events == [("load", "a"), ("unload", "a"), ("load", "b")]
    assert lib.store.loaded_ids() == {models["b"].id}


def test_multimodal_and_chat_are_never_loaded_together(runtime, models):
    runtime.load("a")
    runtime.load("m")
    assert loaded_names(runtime) == {"m"}
    runtime.load("a")
    assert loaded_names(runtime) == {"a"}
    assert PROBE.count("unload", "a") == 1 and PROBE.count("unload", "m") == 1


def test_text_generation_shares_the_language_model_slot(runtime, models):
    runtime.load("a")
    runtime.load("t")
    assert loaded_names(runtime) == {"t"}


def test_embedding_rerank_and_chat_coexist(runtime, models, lib):
    for name in ("e", "a", "r"):
        runtime.load(name)
    assert loaded_names(runtime) == {"a", "e", "r"}
    assert PROBE.count("unload") == 0
    assert lib.store.loaded_ids() == {models[n].id for n in ("a", "e", "r")}
    assert runtime.call("e", "embed", ["four"]) == [[4.0, 1.0, 0.5]]
    assert runtime.call("a", "chat", [{"role": "user", "content": "hi"}]).text == "a heard hi"


def test_same_configuration_twice_is_one_load(runtime, models):
    first = runtime.load("a", settings={"n_ctx": 512})
    again = runtime.load("a", settings={"n_ctx": "512"})  # same value as a CLI string
    assert again is first
    assert PROBE.count("load", "a") == 1
    changed = runtime.load("a", settings={"n_ctx": 1024})
    assert changed is not first
    assert PROBE.events == [("load", "a"), ("unload", "a"), ("load", "a")]
    assert loaded_names(runtime) == {"a"}


def test_two_clients_loading_the_same_model_load_it_once(runtime, models):
    PROBE.load_gate.clear()
    threads = [in_thread(runtime.load, "a") for _ in range(8)]
    assert PROBE.load_entered.wait(WAIT)
    time.sleep(0.2)  # let the other callers reach the load lock while the first load is held
    PROBE.load_gate.set()
    for thread, _ in threads:
        thread.join(WAIT)
    entries = {id(box["value"]) for _, box in threads}
    assert len(entries) == 1
    assert PROBE.count("load", "a") == 1


def test_two_language_models_loaded_at_once_end_with_one(runtime, models):
    PROBE.load_gate.clear()
    first = in_thread(runtime.load, "a")
    assert PROBE.load_entered.wait(WAIT)
    second = in_thread(runtime.load, "b")
    time.sleep(0.2)
    PROBE.load_gate.set()
    for thread, box in (first, second):
        thread.join(WAIT)
        assert "error" not in box
    assert len(loaded_names(runtime)) == 1


def test_a_loaded_model_cannot_be_deleted(runtime, models, lib, home):
    runtime.load("a")
    with pytest.raises(Conflict, match="unload it first"):
        lib.remove("a")
    # Another process sees the server's lease too.
    env = {**os.environ, "CORRAL_HOME": str(home)}
    out = subprocess.run([sys.executable, "-m", "corral", "rm", "a", "--yes"], capture_output=True, text=True,
                         env=env, timeout=120)
    assert out.returncode == Conflict.exit_code, out.stderr
    assert "is loaded" in out.stderr and "Traceback" not in out.stderr
    runtime.unload("a")
    lib.remove("a")
    with pytest.raises(NotFound):
        lib.store.get_model("a")


def test_lora_limit_and_lora_set_in_the_configuration(runtime, models, lib, tmp_path):
    one = lib.add_lora("a", write_lora_gguf(tmp_path / "l1.gguf"), name="one")
    lib.add_lora("a", write_lora_gguf(tmp_path / "l2.gguf", seed=3), name="two")
    with pytest.raises(Incompatible, match="at most 1 LoRA"):
        runtime.load("a", loras=["one", "two"])
    assert loaded_names(runtime) == set()
    plain = runtime.load("a")
    with_lora = runtime.load("a", loras=["one"])
    assert with_lora is not plain and runtime.load("a", loras=["one=1.0"]) is with_lora
    assert [r.lora.id for r in with_lora.loras] == [one.id]
    heavier = runtime.load("a", loras=["one=0.5"])
    assert heavier is not with_lora
    assert PROBE.count("load", "a") == 3
    with pytest.raises(Incompatible, match="bound to another base model, not e"):
        runtime.load("e", loras=["one"])


def test_unknown_setting_is_refused_before_loading(runtime, models):
    with pytest.raises(InvalidSetting, match="unknown setting 'no_such'"):
        runtime.load("a", settings={"no_such": 1})
    with pytest.raises(InvalidSetting, match="probe_level"):
        runtime.load("a", settings={"probe_level": -3})
    assert PROBE.count("load") == 0


def test_missing_plugin_or_backend_is_refused_with_the_install_line(home, tmp_path, minilm_path):
    from corral.library import open_library
    from corral.plugins import build_host

    library = open_library(home, build_host(entry_points=False, plugins=[tp.missing_plugin]))
    library.import_path(minilm_path, name="e")
    library.import_path(write_cross_encoder(tmp_path / "r"), name="r")
    library.import_path(write_tiny_gguf(tmp_path / "a.gguf"), name="a")
    runtime = Runtime(library)
    with pytest.raises(PluginMissing, match="pip install corral-missing"):
        runtime.load("e")
    with pytest.raises(PluginMissing, match="pip install corral-sentence-transformers"):
        runtime.load("r")
    with pytest.raises(PluginMissing, match="pip install corral-llamacpp"):
        runtime.load("a")
    assert runtime.ps() == [] and library.store.loaded_ids() == set()
    runtime.close()


def test_memory_estimate_refuses_with_numbers_unless_forced(runtime, models, monkeypatch, lib):
    from corral import estimate

    need = estimate.estimate_memory(models["a"], {})  # the real estimator, on the real file
    assert need.total_bytes > 0
    monkeypatch.setattr(estimate, "free_memory", lambda: (need.total_bytes // 2, None))
    with pytest.raises(InsufficientMemory) as refused:
        runtime.load("a")
    message = str(refused.value)
    assert "a needs about" in message and "GiB" in message and "is free" in message and "--force" in message
    assert loaded_names(runtime) == set() and lib.store.loaded_ids() == set()
    runtime.load("a", force=True)
    assert loaded_names(runtime) == {"a"}


def test_memory_check_counts_what_the_replaced_model_gives_back(runtime, models, monkeypatch):
    from corral import estimate

    runtime.load("a")  # measured at 123 000 bytes of RAM
    need = estimate.estimate_memory(models["b"], {}).total_bytes
    monkeypatch.setattr(estimate, "free_memory", lambda: (need - 100_000, None))
    runtime.load("b")  # fits once a's memory comes back
    assert loaded_names(runtime) == {"b"}
    with pytest.raises(InsufficientMemory):
        runtime.load("e")  # e replaces nothing, so nothing comes back


def test_measurement_is_recorded_and_hooks_fire(runtime, models, lib):
    runtime.load("a", settings={"n_ctx": 256})
    runtime.unload("a")
    measured = lib.store.measurements(models["a"].id)
    assert measured[0].ram == 123_000 and measured[0].settings == {"n_ctx": 256}
    events = tp.recorder_plugin.events
    assert ("loaded", "a", {"ram": 123_000, "vram": 0}) in events and ("unloaded", "a") in events
    assert lib.store.loaded_ids() == set()


def test_unload_by_category_and_unknown_names(runtime, models):
    runtime.load("a")
    runtime.load("e")
    assert [m.name for m in runtime.unload_category(Category.EMBEDDING)] == ["e"]
    assert loaded_names(runtime) == {"a"}
    with pytest.raises(NotFound, match="b is not loaded"):
        runtime.unload("b")
    with pytest.raises(NotFound, match="no model 'zzz'"):
        runtime.unload("zzz")


def test_wrong_task_for_the_category(runtime, models):
    from corral.driver import Unsupported

    with pytest.raises(Unsupported, match="e is an embedding model; it can embed, not chat"):
        runtime.call("e", "chat", [{"role": "user", "content": "hi"}])
    assert PROBE.count("load") == 0  # refused before loading anything


def test_a_request_uses_the_model_however_it_is_loaded(runtime, models):
    custom = runtime.load("a", settings={"n_ctx": 64})
    assert runtime.ensure("a") is custom
    runtime.unload("a")
    PROBE.load_entered.clear()
    PROBE.load_gate.clear()  # a custom load under way while a request for the same model arrives
    loading = in_thread(runtime.load, "a", settings={"n_ctx": 64})
    assert PROBE.load_entered.wait(WAIT)
    asking = in_thread(runtime.ensure, "a")
    time.sleep(0.2)
    PROBE.load_gate.set()
    for thread, _ in (loading, asking):
        thread.join(WAIT)
    assert asking[1]["value"] is loading[1]["value"]
    assert PROBE.count("load", "a") == 2  # the first custom load, then the second: never a third


# --- requests and the queue ------------------------------------------------------------------------------


def test_a_request_for_a_model_not_loaded_loads_it(runtime, models):
    answer = runtime.call("b", "chat", [{"role": "user", "content": "hello"}])
    assert answer.text == "b heard hello"
    assert loaded_names(runtime) == {"b"}


def test_requests_to_one_model_run_one_at_a_time(runtime, models):
    runtime.load("a")
    PROBE.gate.clear()
    calls = [in_thread(runtime.call, "a", "chat", [{"role": "user", "content": str(i)}]) for i in range(6)]
    assert PROBE.entered.wait(WAIT)
    entry = runtime.find("a")
    deadline = time.monotonic() + WAIT
    while entry.queue.waiting < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert entry.queue.busy and entry.queue.waiting == 5
    PROBE.gate.set()
    for thread, box in calls:
        thread.join(WAIT)
    assert sorted(box["value"].text for _, box in calls) == [f"a heard {i}" for i in range(6)]
    assert PROBE.most_running == 1
    assert entry.queue.served == 6


def test_a_stream_holds_the_model_until_it_ends(runtime, models):
    pieces = runtime.stream("a", "chat", [{"role": "user", "content": "x y"}])
    assert next(pieces) == "a "
    entry = runtime.find("a")
    assert entry.queue.busy
    assert "".join(pieces) == "heard x y "
    assert not entry.queue.busy


def test_queue_admits_one_running_and_max_waiting_then_refuses_at_once():
    queue = RequestQueue("m", max_waiting=3)
    running = queue.enter()
    assert running.granted
    waiting = [queue.enter() for _ in range(3)]
    assert not any(t.granted for t in waiting)
    with pytest.raises(QueueFull, match="1 request running and 3 waiting") as full:
        queue.enter()
    assert full.value.retry_after >= 1 and queue.rejected == 1
    running.release()
    assert waiting[0].granted and not waiting[1].granted  # first come, first served
    waiting[1].cancel()  # a client that went away leaves its place
    waiting[0].release()
    assert waiting[2].granted
    waiting[2].release()
    assert queue.idle and queue.served == 3


def test_closing_a_queue_fails_the_waiting_and_lets_the_running_finish():
    queue = RequestQueue("m")
    running = queue.enter()
    waiter = queue.enter()
    queue.close("m was unloaded")
    with pytest.raises(QueueClosed, match="m was unloaded"):
        waiter.wait(WAIT)
    with pytest.raises(Busy):
        queue.enter()
    assert not queue.wait_drained(0)
    running.release()
    assert queue.wait_drained(WAIT)


def test_unloading_waits_for_the_request_in_progress(runtime, models):
    runtime.load("a")
    PROBE.gate.clear()
    request = in_thread(runtime.call, "a", "chat", [{"role": "user", "content": "slow"}])
    assert PROBE.entered.wait(WAIT)
    unloading = in_thread(runtime.unload, "a")
    deadline = time.monotonic() + WAIT
    while runtime.find("a") is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert runtime.find("a") is None and PROBE.count("unload", "a") == 0  # out of service, not yet freed
    PROBE.gate.set()
    for thread, box in (request, unloading):
        thread.join(WAIT)
    assert request[1]["value"].text == "a heard slow"
    assert PROBE.events[-1] == ("unload", "a")


# --- watchdog ----------------------------------------------------------------------------------------------


def test_keep_alive_unloads_idle_models(lib, models):
    runtime = Runtime(lib, keep_alive=60)
    runtime.load("a")
    runtime.load("e", keep_alive=-1)  # kept until asked
    watchdog = Watchdog(runtime, threshold=100.0)
    assert watchdog.tick(now=time.monotonic() + 30) == []
    assert watchdog.tick(now=time.monotonic() + 61) == ["a"]
    assert loaded_names(runtime) == {"e"}
    assert watchdog.events[-1]["action"] == "unloaded"
    runtime.close()


def test_memory_pressure_unloads_least_recently_used_idle_model(runtime, models):
    for name in ("a", "e", "r"):
        runtime.load(name)
    runtime.call("a", "chat", [{"role": "user", "content": "recent"}])  # a is now the most recently used
    readings = iter([95.0, 80.0])
    watchdog = Watchdog(runtime, threshold=90.0, memory=lambda: next(readings, 80.0))
    assert watchdog.relieve() == ["e"]
    assert loaded_names(runtime) == {"a", "r"}


def test_memory_pressure_never_unloads_a_busy_model(runtime, models):
    runtime.load("a")
    runtime.load("e")
    PROBE.gate.clear()
    request = in_thread(runtime.call, "e", "embed", ["busy"])
    assert PROBE.entered.wait(WAIT)
    # Real psutil readings: any machine running these tests uses more than 1 % of its memory.
    watchdog = Watchdog(runtime, threshold=1.0)
    assert watchdog.tick() == ["a"]
    assert loaded_names(runtime) == {"e"}
    PROBE.gate.set()
    request[0].join(WAIT)
    assert request[1]["value"] == [[4.0, 1.0, 0.5]]
    assert watchdog.tick() == ["e"]
    assert runtime.ps() == []


def test_watchdog_thread_runs_ticks(lib, models):
    runtime = Runtime(lib, keep_alive=0)
    runtime.load("a")
    watchdog = Watchdog(runtime, threshold=100.0, interval=0.05)
    watchdog.start()
    deadline = time.monotonic() + WAIT
    while runtime.ps() and time.monotonic() < deadline:
        time.sleep(0.02)
    watchdog.stop()
    assert runtime.ps() == []
    runtime.close()


@pytest.mark.parametrize(
    "text, seconds",
    [("300", 300.0), ("30s", 30.0), ("5m", 300.0), ("1.5h", 5400.0), ("-1", -1.0), ("forever", -1.0), (0, 0.0)],
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


def test_parse_duration_refuses_nonsense():
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("soon")


def test_close_unloads_everything(lib, models):
    runtime = Runtime(lib)
    runtime.load("a")
    runtime.load("e")
    runtime.close()
    assert PROBE.count("unload") == 2 and lib.store.loaded_ids() == set()
    with pytest.raises(Busy, match="shutting down"):
        runtime.load("a")


def test_each_thread_gets_its_own_database_connection(runtime, models):
    thread, box = in_thread(lambda: runtime.lib().store.get_model("a").name)
    thread.join(WAIT)
    assert box["value"] == "a" and runtime.lib() is runtime.library


def test_fresh_names_come_from_the_library(runtime, models, lib):
    """A model renamed after loading is found by its record id, the name it was loaded under, or the new one."""
    entry = runtime.load("a")
    lib.edit("a", name="renamed")
    assert runtime.find(entry.model.id) is entry
    assert runtime.resolve("renamed").id == entry.model.id

