"""Executors are registered through ``register_executors`` (the core's own ones too) and chosen by name;
an executor that places models on nodes gets the load rules per node, and ``place_model`` or a model's
``node`` setting pins a model to one. The test executor stands in for a cluster plugin: its "nodes" are
names, its models run in this process with the echo driver."""

from __future__ import annotations

import pytest

import plugins_for_tests as tp
from corral import hookimpl
from corral.errors import InsufficientMemory, InvalidSetting
from corral.ext.executor import ExecutorSpec, Placement, Resident, choose_placement, room_by_eviction
from corral.loading.rules import slot
from corral.runtime import Runtime
from corral.runtime.executor import Executor, InProcess, RunnerProcesses, executor_from_env
from factories import write_tiny_gguf

NODES = ("left", "right")


class RoomsExecutor(Executor):
    """Two nodes; a load goes where the model's node setting or ``place_model`` says, else to the first
    node whose load group is free, else the first node."""

    name = "rooms"

    def __init__(self, *, host=None, log_dir=None) -> None:
        self.host = host
        self.placed: list[tuple[str, str]] = []
        self.closed = False

    def place(self, plan, *, occupied, force=False, residents=()):
        candidates = [Placement(node=n, free_ram=1 << 30) for n in NODES]
        chosen = choose_placement(self.host, plan.model, plan.settings, candidates)
        if chosen is not None:
            return chosen
        group = slot(plan.model.category, self.host)
        return next((c for c in candidates if group not in occupied.get(c.node, frozenset())), candidates[0])

    def load(self, plan, *, lost, placement=None):
        assert placement is not None, "a placing executor is told where"
        self.placed.append((plan.model.name, placement.node))
        return plan.driver().load(plan.model, plan.settings, plan.loras)

    def close(self) -> None:
        self.closed = True


class rooms_plugin:  # noqa: N801 - a namespace registered as a plugin
    @staticmethod
    @hookimpl
    def register_executors(register):
        register(ExecutorSpec("rooms", RoomsExecutor, "two named nodes in this process"))


class pin_plugin:  # noqa: N801
    """``place_model``: models whose name starts with "r-" go to the right node."""

    @staticmethod
    @hookimpl
    def place_model(model, settings, candidates):
        if model.name.startswith("r-"):
            return next(c for c in candidates if c.node == "right")
        return None


class taken_plugin:  # noqa: N801 - registers a name the core already has
    @staticmethod
    @hookimpl
    def register_executors(register):
        register(ExecutorSpec("runner", "no.such.module:Thing"))


@pytest.fixture
def host():
    from corral.plugins import build_host, set_host

    built = build_host(entry_points=False, plugins=[tp.echo_plugin, rooms_plugin, pin_plugin, taken_plugin, embed_plugin])
    set_host(built)
    yield built
    set_host(None)


@pytest.fixture
def lib(home, host):
    from corral.library import open_library

    library = open_library(home, host)
    yield library
    library.store.close()


@pytest.fixture
def chats(lib, tmp_path):
    def gguf(name):
        return lib.import_path(write_tiny_gguf(tmp_path / name / f"{name}.gguf"), name=name).model

    return {name: gguf(name) for name in ("a", "b", "c", "r-d")}


@pytest.fixture
def rooms(host, lib):
    executor = executor_from_env(host=host, name="rooms")
    runtime = Runtime(lib, executor=executor)
    yield runtime, executor
    runtime.close()


def test_the_core_registers_its_executors_through_the_hook(host):
    assert host.executor_names()[:2] == ["runner", "in-process"]
    assert host.owners[host.executor("runner")] == "corral.builtin"
    assert host.executor("rooms").summary == "two named nodes in this process"
    # A name already taken is ignored and shown as the plugin's problem.
    assert host.executor("runner").factory == "corral.runtime.executor:RunnerProcesses"
    assert any("executor 'runner' is already registered" in p for p in host.problems["taken_plugin"])


def test_an_executor_is_chosen_by_name_or_by_the_environment(host, tmp_path, monkeypatch):
    monkeypatch.delenv("CORRAL_EXECUTOR", raising=False)
    assert isinstance(executor_from_env(host=host, log_dir=tmp_path), RunnerProcesses)
    assert isinstance(executor_from_env(host=host, name="in-process"), InProcess)
    made = executor_from_env(host=host, name="rooms")
    assert isinstance(made, RoomsExecutor) and made.host is host
    monkeypatch.setenv("CORRAL_EXECUTOR", "rooms")
    assert isinstance(executor_from_env(host=host), RoomsExecutor)
    with pytest.raises(InvalidSetting, match=r"'roms' is not an executor; installed: runner, in-process, "
                                             r"rooms; did you mean rooms\?"):
        executor_from_env(host=host, name="roms")


def test_two_chat_models_run_at_once_on_two_nodes(rooms, chats):
    runtime, executor = rooms
    runtime.load("a")
    runtime.load("b")
    assert {(i.name, i.node) for i in runtime.ps()} == {("a", "left"), ("b", "right")}
    assert runtime.call("a", "chat", [{"role": "user", "content": "hi"}]) == "echo: hi"
    assert runtime.call("b", "chat", [{"role": "user", "content": "ho"}]) == "echo: ho"
    # Both nodes hold a chat model: the next goes to the first and replaces the one there only.
    runtime.load("c")
    assert {(i.name, i.node) for i in runtime.ps()} == {("c", "left"), ("b", "right")}
    assert executor.placed == [("a", "left"), ("b", "right"), ("c", "left")]


def test_place_model_and_the_node_setting_pin_a_model(rooms, chats, lib):
    runtime, executor = rooms
    runtime.load("r-d")  # the plugin's place_model sends it right, though left is free
    assert [(i.name, i.node) for i in runtime.ps()] == [("r-d", "right")]
    runtime.load("a", settings={"node": "right"})  # the setting wins over the rule (left is free)
    assert {(i.name, i.node) for i in runtime.ps()} == {("a", "right")}
    with pytest.raises(InvalidSetting, match=r"node 'middle' .* is not available; nodes that can take it: "
                                             r"left, right"):
        runtime.load("b", settings={"node": "middle"})


def test_choose_placement_asks_the_hook_after_the_setting(host, chats):
    candidates = [Placement(node=n) for n in NODES]
    assert choose_placement(host, chats["a"], {}, candidates) is None
    assert choose_placement(host, chats["r-d"], {}, candidates).node == "right"
    assert choose_placement(host, chats["r-d"], {"node": "left"}, candidates).node == "left"


def test_serve_offers_the_executor_options():
    from click.testing import CliRunner

    from corral.cli import build_cli

    result = CliRunner().invoke(build_cli(), ["serve", "--help"])
    assert result.exit_code == 0
    assert "--executor NAME" in result.output and "--cluster NAME" in result.output


class EchoVectors(tp.EchoHandle):
    def embed(self, texts, **params):
        return [[1.0] for _ in texts]


class EchoEmbedder(tp.EchoDriver):
    name = "echo-embed"
    categories = frozenset({tp.Category.EMBEDDING})
    formats = frozenset({tp.Format.HF_DIR})
    settings = ()

    def load(self, model, settings, loras=()):
        return EchoVectors(model, settings, loras)


class OneRoomExecutor(RoomsExecutor):
    """One node that holds 100 bytes: a load that does not fit asks for the least recently used idle
    models there to be unloaded (each model needs what ``NEED`` says)."""

    name = "one-room"
    SIZE = 100
    NEED = {"talk": 60, "vectors": 50}

    def place(self, plan, *, occupied, force=False, residents=()):
        self.residents = list(residents)
        free = self.SIZE - sum(r.ram for r in residents)
        need = self.NEED[plan.model.name]
        evict = room_by_eviction(residents, "left", lambda ram, vram: free + ram >= need)
        if evict is None:
            raise InsufficientMemory(f"{plan.model.name} does not fit on left")
        return Placement(node="left", free_ram=free, evict=evict)

    def load(self, plan, *, lost, placement=None):
        handle = super().load(plan, lost=lost, placement=placement)
        handle.memory = lambda: {"ram": self.NEED[plan.model.name], "vram": 0}
        return handle


class embed_plugin:  # noqa: N801
    @staticmethod
    @hookimpl
    def register_drivers(register):
        register(EchoEmbedder)


def test_room_by_eviction_takes_the_least_recently_used_idle_models_first():
    residents = [Resident("x", "x", "left", "chat", ram=30, last_used=3.0, idle=True),
                 Resident("y", "y", "left", "embedding", ram=30, last_used=1.0, idle=True),
                 Resident("z", "z", "left", "image", ram=90, last_used=0.5, idle=False),
                 Resident("w", "w", "right", "image", ram=90, last_used=0.1, idle=True)]
    assert room_by_eviction(residents, "left", lambda ram, vram: ram >= 0) == ()
    assert room_by_eviction(residents, "left", lambda ram, vram: ram >= 20) == ("y",)
    assert room_by_eviction(residents, "left", lambda ram, vram: ram >= 50) == ("y", "x")
    assert room_by_eviction(residents, "left", lambda ram, vram: ram >= 61) is None  # z is busy, w elsewhere


def test_a_full_node_unloads_its_least_recently_used_idle_model_and_never_a_busy_one(lib, tmp_path):
    from factories_weights import write_embedding_dir

    executor = OneRoomExecutor()
    runtime = Runtime(lib, executor=executor)
    try:
        lib.import_path(write_tiny_gguf(tmp_path / "chat.gguf"), name="talk")
        lib.import_path(write_embedding_dir(tmp_path / "vectors"), name="vectors")
        runtime.load("vectors")
        assert runtime.find("vectors").memory["ram"] == 50
        runtime.load("talk")  # 50 free, 60 needed: the idle embedding model goes
        assert [i.name for i in runtime.ps()] == ["talk"]
        assert [(r.name, r.node, r.ram, r.idle) for r in executor.residents] == [("vectors", "left", 50, True)]
        runtime.load("vectors")  # 40 free, 50 needed: now the chat model is the idle one
        assert [i.name for i in runtime.ps()] == ["vectors"]
        entry, turn = runtime.enter("vectors")  # a request running on it
        try:
            with pytest.raises(InsufficientMemory, match="^talk does not fit on left$"):
                runtime.load("talk")  # the only model there is busy: nothing to unload
            assert [i.name for i in runtime.ps()] == ["vectors"]
        finally:
            turn.release()
    finally:
        runtime.close()
