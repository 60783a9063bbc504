"""The runtime: the models this process holds loaded, under the load rules (:mod:`corral.loading.rules`),
each with its request queue (:mod:`corral.runtime.queue`). Where a model lives is its executor's business
(:mod:`corral.runtime.executor`: this process, or a runner process of its own).

Thread-safe. Loads within one slot (see :func:`corral.loading.rules.slot`) are serialised, so two
clients asking for the same model at once load it once, and two language models never end up loaded
together. The library database is opened once per thread (SQLite connections stay in their thread).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from contextlib import contextmanager
from typing import Any, Iterator, Mapping, Sequence

import attrs

from corral.ext.driver import LoadedModel
from corral.errors import Busy, InsufficientMemory, NotFound
from corral.ext.executor import Placement, Resident
from corral.library import Library
from corral.loading import LoadPlan, check_memory, plan_load, record_load
from corral.loading.rules import config_key, same_slot, slot
from corral.records import Category, LoraRequest, Model, byte_count
from corral.runtime.executor import Executor, InProcess
from corral.runtime.queue import MAX_WAITING, QueueClosed, RequestQueue, Turn
from corral.words import a_or_an

log = logging.getLogger("corral.runtime")

#: Default seconds an idle model stays loaded (as Ollama's keep-alive).
KEEP_ALIVE = 300.0


@attrs.frozen
class LoadedInfo:
    """A loaded model as ``corral ps`` and ``/corral/ps`` show it."""

    id: str
    name: str
    category: Category
    driver: str
    loras: tuple[str, ...]
    settings: Mapping[str, Any]
    ram: int = byte_count("ram_bytes")
    vram: int = byte_count("vram_bytes")
    loaded_at: float
    last_used: float
    expires_in: float | None
    busy: bool
    waiting: int
    served: int
    rejected: int
    #: Requests running now, and how many the model runs at once (its slots).
    running: int = 0
    parallel: int = 1
    #: The node it runs on, for an executor that places models on a cluster (None: this machine).
    node: str | None = None


@attrs.define(eq=False)
class Loaded:
    """One live model: the driver's handle, what it was loaded with, its queue and its last use."""

    model: Model
    driver: str
    handle: LoadedModel
    settings: Mapping[str, Any]
    loras: tuple[LoraRequest, ...]
    key: tuple
    queue: RequestQueue
    memory: Mapping[str, int]
    keep_alive: float | None
    loaded_at: float = attrs.field(factory=time.time)
    #: Seconds the driver's load took (shown by /metrics).
    load_seconds: float = 0.0
    last_used: float = attrs.field(factory=time.monotonic)
    #: Set once an unload has begun, so a model is never unloaded twice.
    retired: bool = False
    #: The node its executor placed it on (None: this machine).
    node: str | None = None

    def touch(self) -> None:
        self.last_used = time.monotonic()

    def expires_in(self, now: float | None = None) -> float | None:
        """Seconds of idleness left before the keep-alive unloads it (None: kept until asked)."""
        if self.keep_alive is None or self.keep_alive < 0:
            return None
        now = time.monotonic() if now is None else now
        return max(0.0, self.last_used + self.keep_alive - now)

    def current_memory(self) -> Mapping[str, int]:
        """What the model holds now: measured again where the handle says that is cheap (a runner's
        resident memory), else what its load recorded."""
        if getattr(self.handle, "live_memory", False) and not self.retired:
            try:
                self.memory = {k: int(v) for k, v in self.handle.memory().items()}
            except Exception:  # a runner that just died: its exit is reported by the executor
                log.debug("could not measure %s", self.model.name, exc_info=True)
        return self.memory

    def resident(self, host: Any) -> Resident:
        """This model as an executor's placement sees it (what its load recorded, idle or not)."""
        return Resident(model_id=self.model.id, name=self.model.name, node=self.node,
                        group=slot(self.model.category, host), ram=int(self.memory.get("ram", 0)),
                        vram=int(self.memory.get("vram", 0)), last_used=self.last_used, idle=self.queue.idle)

    def info(self) -> LoadedInfo:
        memory = self.current_memory()
        return LoadedInfo(
            id=self.model.id,
            name=self.model.name,
            category=self.model.category,
            driver=self.driver,
            loras=tuple(f"{r.lora.name}={r.weight:g}" for r in self.loras),
            settings=dict(self.settings),
            ram=int(memory.get("ram", 0)),
            vram=int(memory.get("vram", 0)),
            loaded_at=self.loaded_at,
            last_used=time.time() - (time.monotonic() - self.last_used),
            expires_in=self.expires_in(),
            busy=self.queue.busy,
            waiting=self.queue.waiting,
            served=self.queue.served,
            rejected=self.queue.rejected,
            running=self.queue.running,
            parallel=self.queue.slots,
            node=self.node,
        )


class Runtime:
    """Holds loaded models for one process (the server, or a Python program embedding Corral)."""

    def __init__(
        self,
        library: Library,
        *,
        keep_alive: float | None = KEEP_ALIVE,
        max_waiting: int = MAX_WAITING,
        drain_timeout: float = 120.0,
        executor: Executor | None = None,
    ) -> None:
        self.library = library
        #: Where loaded models live (:mod:`corral.runtime.executor`): this process by default; ``corral
        #: serve`` gives each its own runner process.
        self.executor = executor or InProcess()
        self.host = library.host
        self.keep_alive = keep_alive
        self.max_waiting = max_waiting
        #: How long an unload waits for the request in progress before giving up on that model.
        self.drain_timeout = drain_timeout
        self.pid = os.getpid()
        self._db_path = library.store.path
        self._local = threading.local()
        self._local.library = library
        # Weak: a worker thread's connection closes with its thread instead of piling up here.
        self._opened: weakref.WeakSet[Library] = weakref.WeakSet()
        self._state = threading.RLock()
        self._loaded: dict[str, Loaded] = {}
        self._slot_locks: dict[str, threading.Lock] = {}
        self._closed = False

    # --- per-thread library --------------------------------------------------------------------------

    def lib(self) -> Library:
        """This thread's view of the library (its own SQLite connection, the shared plugin host)."""
        library = getattr(self._local, "library", None)
        if library is None:
            from corral.store import Store

            library = Library(Store(self._db_path), self.host)
            self._local.library = library
            with self._state:
                self._opened.add(library)
        return library

    # --- lookups -------------------------------------------------------------------------------------

    def entries(self) -> list[Loaded]:
        with self._state:
            return list(self._loaded.values())

    def ps(self) -> list[LoadedInfo]:
        """Every loaded model, language model first, then by name."""
        order = {c: i for i, c in enumerate(self.host.category_names())}
        return [e.info() for e in sorted(self.entries(), key=lambda e: (order.get(e.model.category, len(order)),
                                                                          e.model.name))]

    def find(self, ref: str) -> Loaded | None:
        """The loaded model called ``ref`` (id, id prefix of 4+ characters, or name), without the database."""
        lowered = ref.lower()
        with self._state:
            for entry in self._loaded.values():
                if ref == entry.model.id or lowered == entry.model.name.lower():
                    return entry
            if len(ref) >= 4:
                hits = [e for e in self._loaded.values() if e.model.id.startswith(ref)]
                if len(hits) == 1:
                    return hits[0]
        return None

    def resolve(self, ref: str) -> Model:
        """A library model by id or name (loaded or not)."""
        entry = self.find(ref)
        return entry.model if entry is not None else self.lib().store.get_model(ref)

    def _slot_lock(self, category: Category) -> threading.Lock:
        with self._state:
            return self._slot_locks.setdefault(slot(category, self.host), threading.Lock())

    # --- load / unload -------------------------------------------------------------------------------

    def load(
        self,
        ref: str,
        *,
        loras: Sequence[str] = (),
        settings: Mapping[str, Any] | None = None,
        force: bool = False,
        keep_alive: float | None = None,
        any_configuration: bool = False,
    ) -> Loaded:
        """Load ``ref`` under the rules, or reuse the identical load already held.

        Replaces the model of the same slot (waiting for its request in progress), checks the backend
        and the memory estimate first (``force`` skips the memory check), and records what the load took.
        ``any_configuration`` reuses the model however it is loaded (what a request naming it wants).
        """
        if self._closed:
            raise Busy("the server is shutting down")
        lib = self.lib()
        model = lib.store.get_model(ref)
        with self._slot_lock(model.category):
            # Read again under the lock: saved settings may have changed while waiting for it.
            plan = with_slots(plan_load(lib, lib.store.get_model(model.id), loras=loras, overrides=settings))
            key = config_key(model.id, plan.loras, plan.settings)
            with self._state:
                held = list(self._loaded.values())
            current = next((e for e in held if e.model.id == model.id
                            and (e.key == key or any_configuration)), None)
            if current is not None:
                current.touch()
                if keep_alive is not None:
                    current.keep_alive = keep_alive
                return current
            occupied: dict[str | None, frozenset[str]] = {}
            for e in held:
                occupied[e.node] = occupied.get(e.node, frozenset()) | {slot(e.model.category, self.host)}
            # The executor says where (a cluster node, or None: here); the rules hold per node.
            placement = self.executor.place(plan, occupied=occupied, force=force, residents=[
                e.resident(self.host) for e in held if e.model.id != model.id])
            node = placement.node if placement is not None else None
            # The same model loaded otherwise goes too, wherever it runs: one load per model.
            victims = [e for e in held if e.model.id == model.id
                       or (e.node == node and same_slot(e.model.category, model.category, self.host))]
            evicted = [e for e in held if placement is not None and e.model.id in placement.evict
                       and e not in victims]
            if placement is None:  # a placed load's memory was checked against its node by the executor
                reclaimable = (sum(v.current_memory().get("ram", 0) for v in victims),
                               sum(v.current_memory().get("vram", 0) for v in victims))
                check_memory(plan, force=force, reclaimable=reclaimable)
            if self._closed:  # shutdown began while this load waited for the slot
                raise Busy("the server is shutting down")
            for idle in evicted:  # the least recently used idle models there, to make room
                reason = f"{idle.model.name} was unloaded to make room on node {node} for {model.name}"
                if not self.unload_if_idle(idle, reason):
                    raise InsufficientMemory(f"{model.name} needs the room of {idle.model.name} on node {node}, "
                                             f"which is busy now; try again when it is idle")
            for victim in victims:
                self._unload(victim, f"{victim.model.name} was unloaded to load {model.name}")
            return self._load(lib, plan, key, self.keep_alive if keep_alive is None else keep_alive, placement)

    def _load(self, lib: Library, plan: LoadPlan, key: tuple, keep_alive: float | None,
              placement: Placement | None = None) -> Loaded:
        model = plan.model
        started = time.monotonic()
        # The lease lasts as long as the model lives wherever the executor put it: released only after
        # its unload (a runner: after its process ended) or once it is found gone.
        lib.store.acquire_lease(model.id, self.pid)
        placed: dict[str, Any] = {}

        def lost(cause: str) -> None:  # the executor's model went away by itself (from any thread)
            placed["cause"] = cause
            if "entry" in placed:
                self._lost(placed["entry"], cause)

        try:
            if placement is None:
                handle = self.executor.load(plan, lost=lost)
            else:
                handle = self.executor.load(plan, lost=lost, placement=placement)
        except BaseException:
            lib.store.release_lease(model.id, self.pid)
            raise
        try:
            memory = record_load(lib, plan, handle)
        except BaseException:
            handle.unload()
            lib.store.release_lease(model.id, self.pid)
            raise
        entry = Loaded(
            model=model,
            driver=plan.driver.name,
            handle=handle,
            settings=dict(plan.settings),
            loras=plan.loras,
            key=key,
            queue=RequestQueue(model.name, self.max_waiting, getattr(handle, "parallel", None) or slots(plan)),
            memory=memory,
            keep_alive=keep_alive,
            load_seconds=time.monotonic() - started,
            node=placement.node if placement is not None else None,
        )
        with self._state:
            self._loaded[model.id] = entry
        placed["entry"] = entry
        if "cause" in placed:  # it died between its load and now
            self._lost(entry, placed["cause"])
        log.info("loaded %s (%s) in %.1f s", model.name, plan.driver.name, time.monotonic() - started)
        return entry

    def ensure(self, ref: str) -> Loaded:
        """The loaded model ``ref``, loading it with its saved settings when it is not loaded."""
        entry = self.find(ref)
        return entry if entry is not None else self.load(ref, any_configuration=True)

    def _unload(self, entry: Loaded, reason: str, *, closed: bool = False) -> bool:
        """Take ``entry`` out of service: refuse new requests, let the running one finish, free it."""
        with self._state:
            if entry.retired:
                return False
            entry.retired = True
            if self._loaded.get(entry.model.id) is entry:
                del self._loaded[entry.model.id]
        if not closed:
            entry.queue.close(reason)
        if not entry.queue.wait_drained(self.drain_timeout) and not self.executor.isolated:
            # Freeing memory under a running request could crash the backend; leave it to process exit.
            # (An isolated executor ends the model's process instead: only that request fails.)
            log.warning("%s is still busy after %.0f s; not unloaded", entry.model.name, self.drain_timeout)
            return False
        try:
            entry.handle.unload()
        finally:
            self.lib().store.release_lease(entry.model.id, self.pid)
            self.host.notify("model_unloaded", model=entry.model)
        log.info("unloaded %s: %s", entry.model.name, reason)
        return True

    def _lost(self, entry: Loaded, cause: str) -> None:
        """``entry`` went away by itself (its runner died or was killed): mark it unloaded, fail the
        requests waiting for it, free its lease. The next request for it loads it again."""
        with self._state:
            if entry.retired:
                return
            entry.retired = True
            if self._loaded.get(entry.model.id) is entry:
                del self._loaded[entry.model.id]
        entry.queue.close(f"{entry.model.name} stopped: {cause}; it is loaded again on the next request")
        try:
            self.lib().store.release_lease(entry.model.id, self.pid)
            self.host.notify("model_unloaded", model=entry.model)
        finally:
            self._forget_library()
        log.warning("%s is unloaded: %s", entry.model.name, cause)

    def _forget_library(self) -> None:
        # _lost runs on an executor's thread that ends soon after: close its connection with it.
        library = getattr(self._local, "library", None)
        if library is not None and library is not self.library:
            self._local.library = None
            library.store.close()

    def unload(self, ref: str) -> Model:
        """Unload one model (waiting for its request in progress); NotFound when it is not loaded."""
        entry = self.find(ref)
        if entry is None:
            model = self.lib().store.get_model(ref)  # NotFound for an unknown name
            raise NotFound(f"{model.name} is not loaded; see `corral ps`")
        with self._slot_lock(entry.model.category):
            self._unload(entry, f"{entry.model.name} was unloaded on request")
        return entry.model

    def unload_category(self, category: Category) -> list[Model]:
        """Unload the loaded model(s) of ``category``."""
        done = []
        for entry in self.entries():
            if entry.model.category == category:
                with self._slot_lock(category):
                    self._unload(entry, f"{entry.model.name} was unloaded on request")
                done.append(entry.model)
        return done

    def unload_if_idle(self, entry: Loaded, reason: str) -> bool:
        """Unload ``entry`` only when no request runs or waits; never blocks (for the watchdog)."""
        lock = self._slot_lock(entry.model.category)
        if not lock.acquire(blocking=False):
            return False  # a load in this slot is under way; look again next time
        try:
            if self.find(entry.model.id) is not entry or not entry.queue.close_if_idle(reason):
                return False
            return self._unload(entry, reason, closed=True)
        finally:
            lock.release()

    def close(self) -> None:
        """Unload everything (each after its request in progress) and close the database connections."""
        self._closed = True
        with self._state:
            slots = list(self._slot_locks.items())
        for name, lock in slots:
            with lock:  # a load under way in this slot finishes first, then goes too
                for entry in [e for e in self.entries() if slot(e.model.category, self.host) == name]:
                    try:
                        self._unload(entry, "the server is shutting down")
                    except Exception:  # one failing unload must not keep the others loaded
                        log.exception("unloading %s failed", entry.model.name)
        self.executor.close()
        with self._state:
            opened = list(self._opened)
        for library in opened:
            try:
                library.store.close()
            except Exception:  # a connection of a thread that is gone
                pass

    # --- requests ------------------------------------------------------------------------------------

    def enter(self, ref: str, task: str | None = None) -> tuple[Loaded, Turn]:
        """Ensure ``ref`` is loaded and take a place in its queue (without waiting for the turn).

        Raises :class:`corral.errors.QueueFull` at once when the queue is full, and
        :class:`corral.driver.Unsupported` when the model's category cannot do ``task``.
        """
        check_task(self.resolve(ref), task, self.host)  # before loading anything
        for _ in range(3):
            entry = self.ensure(ref)
            try:
                return entry, entry.queue.enter()
            except QueueClosed:
                continue  # replaced between lookup and entry: look it up again
        raise Busy(f"{ref} keeps being unloaded and loaded again; retry later")

    @contextmanager
    def turn(self, ref: str, task: str | None = None, *, timeout: float | None = None) -> Iterator[Loaded]:
        """Hold ``ref``'s turn for a block of work in this thread: ``with runtime.turn("m") as e: ...``."""
        entry, turn = self.enter(ref, task)
        turn.wait(timeout)
        try:
            yield entry
        finally:
            entry.touch()
            turn.release()

    def call(self, ref: str, task: str, *args: Any, **params: Any) -> Any:
        """Run one task (``chat``, ``complete``, ``embed``, ...) on ``ref`` in its turn."""
        with self.turn(ref, task) as entry:
            return getattr(entry.handle, task)(*args, **params)

    def stream(self, ref: str, task: str, *args: Any, **params: Any) -> Iterator[str]:
        """Stream a ``chat`` or ``complete`` answer; the model's turn is held until the stream ends."""
        with self.turn(ref, task) as entry:
            yield from getattr(entry.handle, task)(*args, stream=True, **params)


def slots(plan: LoadPlan) -> int:
    """Requests a load runs at once: its ``parallel`` setting where the driver declares one (else that
    spec's default, the driver's), 1 for drivers without it."""
    spec = next((s for s in plan.driver.settings if s.name == "parallel"), None)
    if spec is None:
        return 1
    return max(1, int(plan.settings.get("parallel") or spec.default or 1))


def with_slots(plan: LoadPlan) -> LoadPlan:
    """``plan`` with its slot count written into the settings, for a driver that has slots: the memory
    estimate counts every slot's KV cache, and the load record says how many there were."""
    if not any(s.name == "parallel" for s in plan.driver.settings):
        return plan
    return attrs.evolve(plan, settings={**plan.settings, "parallel": slots(plan)})


def check_task(model: Model, task: str | None, host: Any) -> None:
    """Refuse a task the model's category cannot do (as its plugin declared it), naming what it is."""
    from corral.ext.driver import Unsupported

    if task is not None and task not in host.tasks(model.category):
        can = ", ".join(sorted(host.tasks(model.category))) or "nothing"
        raise Unsupported(f"{model.name} is {a_or_an(model.category)} model; it can {can}, not {task}")

