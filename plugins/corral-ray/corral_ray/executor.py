"""The ``ray`` executor: ``corral serve --cluster ray`` places each loaded model in an actor on a node.

Admission stays on the head: the runtime's load rules (per node), queues and 503s are the server's as
with any executor. This module decides *where* (:meth:`RayExecutor.place`) and holds the proxy to the
model actor (:class:`RayHandle` over :class:`ActorRunner`), which is the runner process's proxy with a
Ray actor at the other end: the same frames, streams, cancels and time limits
(:mod:`corral_ray.actor`).

Placement, for each load: the nodes whose agents answer (within :data:`REPORT_TIMEOUT`), whose versions
match the head's, that hold the load's files and can run its driver; among them the model's ``node``
setting or a ``place_model`` plugin may choose; else a node where the model's load group is free, then
the one with the most free memory. When no node has room as it is, the least recently used idle models
of other load groups on a node are unloaded first (the first node, in that order, where that makes
enough room); a load that fits no node even so is refused with the best node's numbers. A node or actor that dies fails its requests with :class:`corral.api.NodeLost` (503 with
Retry-After) and its models are dropped, so the next request places them again.
"""

from __future__ import annotations

import collections
import itertools
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import attrs
import ray
from ray.exceptions import GetTimeoutError, RayError

from corral.api import (
    CorralError,
    Executor,
    InsufficientMemory,
    LoadedModel,
    LoadPlan,
    NodeLost,
    NotFound,
    Placement,
    PluginMissing,
    Resident,
    Runner,
    RunnerFailed,
    RunnerHandle,
    ServerUnavailable,
    choose_placement,
    estimate_memory,
    request_timeout,
    room_by_eviction,
    shortfalls,
)
from corral_ray.actor import ModelActor
from corral_ray.agent import find_agent
from corral_ray.nodes import NAMESPACE, SHARE, VERSIONS_KEY, local_versions, node_name, node_resource, version_problem

log = logging.getLogger("corral.ray")

#: Seconds a node agent has to report before its node is left out of a placement.
REPORT_TIMEOUT = 10.0
#: Seconds a model actor may go without answering a frame poll before its node counts as lost.
ANSWER_TIMEOUT = 30.0
#: Seconds one frame poll waits at the actor for the model to send something.
POLL = 1.0
#: Seconds a new model actor has to start on its node.
START_TIMEOUT = 120.0
#: Seconds an unloaded actor has to confirm before it is killed; a cancel's grace.
STOP_TIMEOUT = 60.0
CANCEL_GRACE = 5.0


def connect(address: str | None = None) -> bool:
    """Join the Ray cluster as a driver (``address``, else ``CORRAL_RAY_ADDRESS``, else Ray's own
    ``RAY_ADDRESS`` / ``auto``); False when this process was connected already."""
    if ray.is_initialized():
        return False
    target = address or os.environ.get("CORRAL_RAY_ADDRESS") or os.environ.get("RAY_ADDRESS") or "auto"
    try:
        ray.init(address=target, namespace=NAMESPACE, logging_level=logging.WARNING, log_to_driver=False,
                 configure_logging=False)
    except (ConnectionError, RuntimeError) as exc:
        raise ServerUnavailable(f"no Ray cluster answers at {target} ({exc}); start its head with "
                                f"`ray start --head` and give its address (CORRAL_RAY_ADDRESS)") from None
    return True


def _kv() -> Any:
    from ray.experimental import internal_kv

    return internal_kv


def publish_versions() -> dict[str, Any]:
    """Write this head's versions where joining workers read them; the versions."""
    versions = local_versions()
    _kv()._internal_kv_put(VERSIONS_KEY, json.dumps(versions).encode(), overwrite=True, namespace=NAMESPACE)
    return versions


def head_versions() -> dict[str, Any] | None:
    """The versions the head published (None: no ``corral serve --cluster ray`` has run on it yet)."""
    raw = _kv()._internal_kv_get(VERSIONS_KEY, namespace=NAMESPACE)
    return json.loads(raw) if raw else None


def load_files(plan: LoadPlan) -> list[dict[str, Any]]:
    """The files a node needs for ``plan``: the model's (with its size and sha256 where the record has
    them), its components' and its LoRAs'."""
    model = plan.model
    paths = list(model.paths) or [model.path]
    files = [{"path": str(p), "size": model.size if len(paths) == 1 else None,
              "sha256": model.sha256 if len(paths) == 1 else None} for p in paths]
    files += [{"path": str(c.path), "size": None, "sha256": None} for c in model.components]
    files += [{"path": str(r.lora.path), "size": r.lora.size or None, "sha256": None} for r in plan.loras]
    return files


def driver_path(driver: type) -> str:
    return f"{driver.__module__}:{driver.__qualname__}"


# --- the proxy -----------------------------------------------------------------------------------------


class ActorChannel:
    """The runner protocol's channel to a model actor: :meth:`send` posts a frame, :meth:`receive` polls
    for the actor's frames; a poll unanswered within ``answer_timeout`` (or an actor or node that died)
    breaks the channel, as a closed socket does a runner's."""

    def __init__(self, actor: Any, *, answer_timeout: float, poll: float = POLL) -> None:
        self.actor = actor
        self.answer_timeout = answer_timeout
        self.poll = poll
        self._seq = itertools.count()
        self._send_lock = threading.Lock()
        self._frames: collections.deque = collections.deque()
        self._closed = False

    def send(self, message: dict) -> None:
        with self._send_lock:  # numbered in the order sent
            self.actor.post.remote(next(self._seq), message)

    def receive(self) -> dict | None:
        while not self._frames:
            if self._closed:
                return None
            try:
                batch = ray.get(self.actor.take.remote(self.poll), timeout=self.poll + self.answer_timeout)
            except GetTimeoutError:
                raise ConnectionError(f"it did not answer for {self.answer_timeout:.0f} s") from None
            except RayError as exc:
                raise ConnectionError(_first_line(exc)) from None
            self._frames.extend(batch)
        return self._frames.popleft()

    def close(self) -> None:
        self._closed = True


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


class ActorRunner(Runner):
    """A runner whose process is a Ray actor on node ``node``: the runner's calls, streams, cancels
    and time limits, with Ray's kill for the process's and :class:`NodeLost` when the node goes."""

    def __init__(self, name: str, actor: Any, channel: ActorChannel, *, node: str, lost: Any,
                 cancel_grace: float, stop_timeout: float) -> None:
        self.actor = actor
        self.node = node
        self.actor_pid = 0
        super().__init__(name, None, channel, Path(f"ray-node-{node}"), lost=lost, cancel_grace=cancel_grace,
                         stop_timeout=stop_timeout)

    @property
    def pid(self) -> int:
        return self.actor_pid

    def _exit_cause(self, problem: str | None) -> str:
        if self._kill_reason is not None:
            return f"its actor on node {self.node} was stopped: it {self._kill_reason}"
        if self._stopping:
            return f"its actor on node {self.node} was unloaded"
        return f"node {self.node} (or the model's actor there) stopped answering: {problem or 'it ended'}"

    def _gone(self) -> RunnerFailed:
        if self._stopping and self._kill_reason is None:
            return RunnerFailed(f"{self.name}: {self.cause or 'it was unloaded'}")
        return NodeLost(f"{self.name}: {self.cause or f'node {self.node} stopped answering'}; it is loaded "  # type: ignore[return-value]
                        f"again, on another node if need be, on the next request")

    def load(self, plan: LoadPlan, timeout: float | None) -> dict:
        try:
            ready = super().load(plan, timeout)
        except RunnerFailed:
            if self._dead:  # the actor or its node died during the load
                raise self._gone() from None
            raise
        self.actor_pid = int(ready.get("pid") or 0)
        return ready

    def _kill_now(self) -> None:
        try:
            ray.kill(self.actor, no_restart=True)
        except Exception:  # noqa: BLE001 - an actor already gone with its node
            log.debug("killing the actor of %s failed", self.name, exc_info=True)

    def stop(self) -> None:
        """Unload the model in the actor, then end the actor."""
        self._stopping = True
        if not self._dead:
            self._ask_unload()
        self._kill_now()
        self._join(self.cancel_grace + POLL + 5)

    def pids(self) -> list[int]:
        return [self.actor_pid] if self.actor_pid else []

    def rss(self) -> int:
        return int(self.memory().get("ram") or 0)

    def memory(self) -> dict[str, Any]:
        """What the actor holds, measured on its node (empty when it cannot say in time)."""
        if self._dead:
            return {}
        try:
            return ray.get(self.actor.memory.remote(), timeout=REPORT_TIMEOUT)
        except RayError:
            return {}


class RayHandle(RunnerHandle):
    """A model loaded in an actor on a cluster node, with the interface of the driver's own handle (the
    runner proxy's tasks, streams and extra methods)."""

    #: Measured on its node with a remote call: ``corral ps`` shows what the load took, not a new reading.
    live_memory = False

    @property
    def node(self) -> str:
        return self.runner.node

    def memory(self) -> dict[str, int]:
        if not self.runner.alive:
            raise self.runner._gone()
        found = self.runner.memory()
        vram = found.get("vram")
        if vram is None:
            vram = self.runner.driver_memory().get("vram", 0)
        return {"ram": int(found.get("ram") or 0), "vram": int(vram or 0)}


# --- the executor --------------------------------------------------------------------------------------


class RayExecutor(Executor):
    """Places loaded models on the Corral worker nodes of a Ray cluster (see the module docstring).

    ``address`` is the cluster's (default: ``CORRAL_RAY_ADDRESS``, else Ray's own discovery); the
    timeouts bound every remote call: an agent's report, a poll of a model actor, an actor's start.
    """

    name = "ray"
    isolated = True

    def __init__(self, *, host: Any = None, log_dir: Path | None = None, address: str | None = None,
                 report_timeout: float = REPORT_TIMEOUT, answer_timeout: float = ANSWER_TIMEOUT,
                 start_timeout: float = START_TIMEOUT, cancel_grace: float = CANCEL_GRACE,
                 stop_timeout: float = STOP_TIMEOUT) -> None:
        if host is None:
            from corral.api import get_host

            host = get_host()
        self.host = host
        self.report_timeout = report_timeout
        self.answer_timeout = answer_timeout
        self.start_timeout = start_timeout
        self.cancel_grace = cancel_grace
        self.stop_timeout = stop_timeout
        self._connected = connect(address)
        self.versions = publish_versions()
        self._lock = threading.Lock()
        #: The runners this executor started and their load group and measured memory.
        self._runners: dict[int, tuple[ActorRunner, str, int]] = {}

    # --- what the nodes say --------------------------------------------------------------------------

    def node_names(self) -> list[str]:
        """The Corral worker nodes Ray has alive now."""
        names = []
        for node in ray.nodes():
            name = node_name(node.get("Resources") or {}) if node.get("Alive") else None
            if name is not None:
                names.append(name)
        return sorted(names)

    def reports(self, files: Sequence[dict], drivers: Sequence[str]) -> tuple[list[dict], list[str]]:
        """Each alive node's report (asked of all at once, each within ``report_timeout``), and a line
        for each node that could not report."""
        import sys

        asked, silent = [], []
        sys_path = [p for p in sys.path if isinstance(p, str)]
        for name in self.node_names():
            agent = find_agent(name)
            if agent is None:
                silent.append(f"{name} has no agent yet (is its `corral worker` still starting?)")
                continue
            asked.append((name, agent.report.remote(list(files), list(drivers), sys_path)))
        deadline = time.monotonic() + self.report_timeout
        found = []
        for name, ref in asked:
            try:
                found.append(ray.get(ref, timeout=max(0.0, deadline - time.monotonic())))
            except GetTimeoutError:
                silent.append(f"{name} did not report within {self.report_timeout:.0f} s")
            except RayError as exc:
                silent.append(f"{name} could not report ({_first_line(exc)})")
        return found, silent

    def _placed(self, node: str) -> list[tuple[ActorRunner, str, int]]:
        with self._lock:
            live = [v for v in self._runners.values() if v[0].alive]
        return [v for v in live if v[0].node == node]

    def placement(self, report: Mapping[str, Any]) -> Placement:
        """A node's report as a placement; a node with ``corral worker --memory`` counts the models this
        head placed there against that limit."""
        node = report["node"]
        free_ram = int(report["free_ram"])
        limit = report.get("memory_limit")
        if limit:
            used = sum(ram for _, _, ram in self._placed(node))
            free_ram = max(0, min(free_ram, int(limit) - used))
        free_vram = report.get("free_vram")
        return Placement(node=node, free_ram=free_ram, free_vram=int(free_vram or 0),
                         facts={"gpus": report.get("gpus") or [], "has_gpu_memory": free_vram is not None,
                                "drivers": report.get("drivers") or {}, "versions": report.get("versions")})

    # --- placing -------------------------------------------------------------------------------------

    def place(self, plan: LoadPlan, *, occupied: Mapping[str | None, frozenset[str]],
              force: bool = False, residents: Sequence[Resident] = ()) -> Placement:
        model = plan.model
        files = load_files(plan)
        driver = driver_path(plan.driver)
        reports, silent = self.reports(files, [driver])
        able, why = [], list(silent)
        lacking_driver = 0
        for report in reports:
            node = report["node"]
            problem = version_problem(self.versions, report.get("versions") or {})
            if problem is not None:
                why.append(f"{node} is refused: {problem.replace('this node', 'it')}")
                continue
            missing = [f["path"] for f in files if not report["files"].get(f["path"])]
            if missing:
                why.append(f"{node} holds no copy of {', '.join(missing)} (same path, size and sha256)")
                continue
            status = report["drivers"].get(driver) or {}
            if not status.get("available"):
                lacking_driver += 1
                why.append(f"{node} cannot run the {plan.driver.name} driver ({status.get('problem') or 'not installed'})")
                continue
            able.append(self.placement(report))
        if not able:
            if not reports and not silent:
                raise NodeLost(f"no Corral worker node is in the Ray cluster to load {model.name}: run "
                               f"`corral worker --address HEAD:PORT` on each machine")
            message = f"no node can load {model.name}: " + "; ".join(why)
            if lacking_driver:
                raise PluginMissing(message)
            if not reports:
                raise NodeLost(message)
            raise NotFound(message)
        group = self.host.load_group(model.category)
        try:
            need = estimate_memory(model, dict(plan.settings), loras=plan.loras)
        except CorralError:
            need = None

        def problems(p: Placement, ram: int = 0, vram: int = 0) -> list[str]:
            """What ``p`` lacks for the model, once ``ram`` / ``vram`` more were given back there."""
            if need is None or not need.total_bytes:
                return []
            back = self._reclaimable(p.node, group) if group in occupied.get(p.node, frozenset()) else (0, 0)
            return shortfalls(need, p.free_ram, p.free_vram if p.facts.get("has_gpu_memory") else None,
                              reclaimable=(back[0] + ram, back[1] + vram))

        # Models of the same group there are replaced anyway (counted above); the others may make room.
        others = [r for r in residents if r.group != group]

        def made_room(p: Placement) -> Placement | None:
            """``p`` with the least recently used idle models there to unload first, if that is enough."""
            evict = room_by_eviction(others, p.node, lambda ram, vram: not problems(p, ram, vram))
            return attrs.evolve(p, evict=evict) if evict is not None else None

        chosen = choose_placement(self.host, model, plan.settings, able)
        if chosen is not None:
            if force or not problems(chosen):
                return chosen
            if (roomy := made_room(chosen)) is not None:
                return roomy
            raise InsufficientMemory(f"{model.name} on node {chosen.node} {'; '.join(problems(chosen))}; "
                                     f"use --force to try anyway")
        # A node with the model's load group free first, then the most free memory.
        ranked = sorted(able, key=lambda p: (group in occupied.get(p.node, frozenset()), -p.free_vram,
                                             -p.free_ram, p.node))
        fitting = [p for p in ranked if not problems(p)]
        if fitting:
            return fitting[0]
        if force:
            return ranked[0]
        # No node has room as it is: the first where unloading idle models (oldest first) makes enough.
        for p in ranked:
            if (roomy := made_room(p)) is not None:
                return roomy
        best = max(able, key=lambda p: (p.free_vram, p.free_ram))
        raise InsufficientMemory(f"{model.name} fits no node; the best, {best.node}: {'; '.join(problems(best))}; "
                                 f"unload models there, lower n_ctx, add a node, or use --force to try anyway")

    def _reclaimable(self, node: str, group: str) -> tuple[int, int]:
        return sum(ram for _, g, ram in self._placed(node) if g == group), 0

    # --- loading -------------------------------------------------------------------------------------

    def load(self, plan: LoadPlan, *, lost: Any, placement: Placement | None = None) -> LoadedModel:
        if placement is None:  # called without place(): choose here
            placement = self.place(plan, occupied={})
        model = plan.model
        node = placement.node
        timeout = request_timeout(plan.settings)
        actor = ModelActor.options(resources={node_resource(node): SHARE},
                                   name=None, max_restarts=0).remote(model.name)
        runner = ActorRunner(model.name, actor, ActorChannel(actor, answer_timeout=self.answer_timeout),
                             node=node, lost=lost, cancel_grace=self.cancel_grace, stop_timeout=self.stop_timeout)
        try:
            try:
                ray.get(actor.memory.remote(), timeout=self.start_timeout)
            except GetTimeoutError:
                raise NodeLost(f"{model.name}: node {node} did not start its actor within "
                               f"{self.start_timeout:.0f} s") from None
            except RayError as exc:
                raise NodeLost(f"{model.name}: node {node} could not start its actor ({_first_line(exc)})") from None
            ready = runner.load(plan, timeout)
        except BaseException:
            runner.stop()
            raise
        handle = RayHandle(model, plan.settings, plan.loras, runner, ready, lambda: (), timeout)
        ram = int(handle.memory().get("ram") or 0)
        with self._lock:
            self._runners[id(runner)] = (runner, self.host.load_group(model.category), ram)
        log.info("%s runs on node %s (actor pid %s)", model.name, node, runner.pid)
        return handle

    def close(self) -> None:
        with self._lock:
            runners = [v[0] for v in self._runners.values()]
            self._runners.clear()
        for runner in runners:
            runner.kill("the server is shutting down")
        if self._connected and ray.is_initialized():
            ray.shutdown()
