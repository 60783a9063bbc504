"""Executors: where a loaded model lives. The runtime decides *whether* to load (rules, queue, memory
checks, leases); its executor decides *where*, and hands back a handle with the
:class:`corral.ext.driver.LoadedModel` interface.

The seam is one method and a close::

    class Executor:
        def load(self, plan, *, lost) -> LoadedModel: ...
        def close(self) -> None: ...

``plan`` is the checked :class:`corral.loading.LoadPlan` (model, driver class, LoRAs, settings). ``lost``
is a callback the executor calls, once, from any thread, with the cause in words when the model goes
away by itself (its process died, it was killed after ignoring a cancel); the runtime then marks it
unloaded. The handle's tasks raise :class:`corral.errors.RunnerFailed` once it is gone, and
``unload()`` ends it and returns all its memory.

* :class:`InProcess`: the driver's own handle, in this process (``corral chat`` one-shot, tests).
* :class:`RunnerProcesses`: one child process per loaded model (the default of ``corral serve``), see
  :mod:`corral.runtime.runner`; a crash or hang of one backend fails its own requests only.

A cluster executor (a Ray actor per model, from a plugin) implements the same two methods.
"""

from __future__ import annotations

import contextvars
import functools
import itertools
import logging
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterable, Iterator, Mapping, Sequence

from corral.convert import to_data
from corral.errors import Cancelled, CorralError, InvalidSetting, RunnerFailed, TimedOut
from corral.ext.driver import LoadedModel
from corral.records import LoraRequest, Model
from corral.runtime.wire import Channel, WireError, decode, decode_error, encode
from corral.settings import CORE_SETTINGS
from corral.suggest import did_you_mean

if TYPE_CHECKING:
    from corral.ext.executor import Placement, Resident
    from corral.ext.gpu import GpuVendor
    from corral.loading import LoadPlan

log = logging.getLogger("corral.runtime")

#: Seconds one request may run when the model's ``request_timeout`` setting is not set (0: no limit).
REQUEST_TIMEOUT: float = next(s.default for s in CORE_SETTINGS if s.name == "request_timeout")
#: Set by the server around a request whose client may leave: an event set when the client left. A
#: runner call made under it is cancelled then (see :meth:`Runner.call`); in-process calls cannot be.
client_left: contextvars.ContextVar[threading.Event | None] = contextvars.ContextVar("corral_client_left",
                                                                                   default=None)
#: How often a call made under :data:`client_left` looks whether its client is still there, in seconds.
LEFT_POLL = 0.2

#: Seconds a runner has to stop a cancelled request before it is killed.
CANCEL_GRACE = 5.0
#: Seconds a runner has to unload and exit before it is killed.
STOP_TIMEOUT = 60.0
#: Log lines quoted in the error of a runner that died.
LOG_LINES = 4

Lost = Callable[[str], None]


def request_timeout(settings: Mapping[str, Any]) -> float | None:
    """The time limit of one request in seconds (None: no limit) from a model's settings."""
    value = settings.get("request_timeout")
    seconds = REQUEST_TIMEOUT if value is None else float(value)
    return seconds if seconds > 0 else None


class Executor:
    """Creates loaded models somewhere and hands back handles with the ``LoadedModel`` interface."""

    #: Shown in logs and ``/corral/status``.
    name: ClassVar[str] = ""
    #: Whether a crash or hang of one model leaves this process and the other models running (so the
    #: runtime may end a model with a request still running: only that request fails).
    isolated: ClassVar[bool] = False

    def load(self, plan: LoadPlan, *, lost: Lost) -> LoadedModel:
        """Load ``plan``'s model with its driver and settings; call ``lost(cause)`` if it goes away.

        An executor whose :meth:`place` chose a node is called with ``placement=`` that choice too."""
        raise NotImplementedError

    def place(self, plan: LoadPlan, *, occupied: Mapping[str | None, frozenset[str]],
              force: bool = False, residents: Sequence[Resident] = ()) -> Placement | None:
        """Where ``plan``'s model will be loaded, before the runtime applies the load rules there.

        ``occupied`` maps each node (None: this machine) to the load groups its loaded models hold, so an
        executor can prefer a node with the model's group free; ``residents`` are the loaded models other
        than this one (where, how much, idle or not): a placement may name idle ones to unload first
        (``Placement.evict``; :func:`corral.ext.executor.room_by_eviction`). None (the default) means
        this machine: the runtime checks the memory estimate against its own free memory. A placement's
        node gets its own load rules (one model per group per node), and the executor has checked its
        memory; an executor that finds no node able to hold the model raises
        (:class:`corral.errors.InsufficientMemory` with the best node's numbers)."""
        return None

    def close(self) -> None:
        """End whatever this executor still holds (the runtime unloads its models first)."""


class InProcess(Executor):
    """The driver's handle in this process: no isolation, no overhead (a crash takes the process)."""

    name = "in-process"

    def __init__(self, *, host: Any = None, log_dir: Path | None = None) -> None:
        pass  # the factory's keyword arguments; nothing to keep

    def load(self, plan: LoadPlan, *, lost: Lost) -> LoadedModel:
        return plan.driver().load(plan.model, plan.settings, plan.loras)


class RunnerProcesses(Executor):
    """One runner process per loaded model, talking to this one over a socket pair.

    ``host`` supplies the GPU vendor plugins that report per-process VRAM (default: the process-wide
    host); ``log_dir`` keeps each runner's stdout and stderr (default: a temporary folder);
    ``cancel_grace`` is how long a cancelled request may take to stop before its runner is killed.
    """

    name = "runner"
    isolated = True

    def __init__(
        self,
        *,
        host: Any = None,
        log_dir: Path | None = None,
        cancel_grace: float = CANCEL_GRACE,
        stop_timeout: float = STOP_TIMEOUT,
        python: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.host = host
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self.cancel_grace = cancel_grace
        self.stop_timeout = stop_timeout
        self.python = python or sys.executable
        self.env = dict(env or {})
        self._runners: weakref.WeakSet[Runner] = weakref.WeakSet()

    def _vendors(self) -> list[GpuVendor]:
        host = self.host
        if host is None:
            from corral.plugins import get_host

            host = get_host()
        return [cls() for cls in host.gpu_vendors]

    def _log_path(self, model: Model) -> Path:
        user = os.getuid() if hasattr(os, "getuid") else 0
        folder = self.log_dir or Path(tempfile.gettempdir()) / f"corral-runners-{user}"
        folder.mkdir(parents=True, exist_ok=True)
        safe = re.sub(r"[^A-Za-z0-9._-]+", "-", model.name)[:60] or "model"
        return folder / f"{safe}-{model.id[:8]}.log"

    def load(self, plan: LoadPlan, *, lost: Lost) -> LoadedModel:
        model = plan.model
        timeout = request_timeout(plan.settings)
        runner = Runner.start(model.name, self._log_path(model), lost=lost, python=self.python, env=self.env,
                              cancel_grace=self.cancel_grace, stop_timeout=self.stop_timeout)
        self._runners.add(runner)
        try:
            ready = runner.load(plan, timeout)
        except BaseException:
            runner.stop()
            raise
        return RunnerHandle(model, plan.settings, plan.loras, runner, ready, self._vendors, timeout)

    def close(self) -> None:
        for runner in list(self._runners):
            runner.kill("the server is shutting down")

    def runners(self) -> list[Runner]:
        """The runners started and not yet ended."""
        return [r for r in self._runners if r.alive]


def executor_from_env(*, host: Any = None, log_dir: Path | None = None, name: str | None = None) -> Executor:
    """The executor ``corral serve`` uses: ``name`` (``--executor``), else ``CORRAL_EXECUTOR``, else
    ``runner``; any executor a plugin registered (``register_executors``) may be named."""
    if host is None:
        from corral.plugins import get_host

        host = get_host()
    chosen = (name or os.environ.get("CORRAL_EXECUTOR", "")).strip().lower() or RunnerProcesses.name
    spec = host.executor(chosen)
    if spec is None:
        known = host.executor_names()
        raise InvalidSetting(f"{chosen!r} is not an executor; installed: {', '.join(known) or 'none'}"
                             + (f"; {hint}" if (hint := did_you_mean(chosen, known)) else ""))
    return spec.create(host=host, log_dir=log_dir)


# --- the runner process, seen from the server ---------------------------------------------------------


def _driver_path(driver: type) -> str:
    qualname = driver.__qualname__
    if "<locals>" in qualname or driver.__module__ == "__main__":
        raise RunnerFailed(
            f"the {driver.name} driver ({driver.__module__}.{qualname}) cannot be imported by a runner "
            f"process; define it at the top level of an importable module"
        )
    return f"{driver.__module__}:{qualname}"


def load_message(plan: LoadPlan) -> dict:
    """The ``load`` frame that tells a runner (a process, or a cluster's actor) what to load."""
    return {
        "op": "load",
        "driver": _driver_path(plan.driver),
        "model": to_data(plan.model),
        "settings": encode(dict(plan.settings)),
        "loras": [to_data(r) for r in plan.loras],
        "sys_path": [p for p in sys.path if isinstance(p, str)],
    }


def describe_exit(returncode: int | None) -> str:
    """How a runner process ended, in words."""
    if returncode is None:
        return "stopped answering"
    if returncode < 0:
        number = -returncode
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        if number == getattr(signal, "SIGKILL", 9):
            return "was killed (SIGKILL: the system's out-of-memory killer sends this too)"
        if number == getattr(signal, "SIGABRT", 6):
            return "aborted (SIGABRT: the backend stopped on a failed check)"
        if number == getattr(signal, "SIGSEGV", 11):
            return "crashed (SIGSEGV: a memory error in the backend)"
        return f"died of {name}"
    return "exited" if returncode == 0 else f"exited with status {returncode}"


def log_tail(path: Path, lines: int = LOG_LINES) -> list[str]:
    """The telling last lines of a runner's log: what came before a fatal error's stack dump, without
    repeats (every thread of a backend may print the same assert)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 65536))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return []
    found = [line.rstrip() for line in text.splitlines() if line.strip()]
    for i in range(len(found) - 1, -1, -1):
        if found[i].startswith("Fatal Python error"):
            found = found[: i + 1]  # the thread dumps after it say where, not why
            break
    kept: list[str] = []
    for line in found:
        if line not in kept[-2:]:
            kept.append(line if len(line) <= 300 else line[:297] + "...")
    return kept[-lines:]


class Runner:
    """One runner process and the socket to it. Thread-safe: calls from many threads, one reader."""

    _ids = itertools.count(1)

    def __init__(self, name: str, process: subprocess.Popen, channel: Channel, log_path: Path, *, lost: Lost,
                 cancel_grace: float, stop_timeout: float) -> None:
        self.name = name
        self.process = process
        self.channel = channel
        self.log_path = log_path
        self.cancel_grace = cancel_grace
        self.stop_timeout = stop_timeout
        self._lost = lost
        self._lock = threading.Lock()
        self._calls: dict[int, queue.Queue] = {}
        self._control: queue.Queue = queue.Queue()
        # Control answers (ready, memory, unloaded) carry no id: one control exchange at a time.
        self._control_lock = threading.Lock()
        self._dead = False
        self._stopping = False
        self._ready = False
        self._kill_reason: str | None = None
        #: Why the runner ended (None while it runs).
        self.cause: str | None = None
        self._reader = threading.Thread(target=self._read, name=f"corral-runner-{name}", daemon=True)
        self._reader.start()

    @classmethod
    def start(cls, name: str, log_path: Path, *, lost: Lost, python: str, env: Mapping[str, str],
              cancel_grace: float, stop_timeout: float) -> Runner:
        ours, theirs = socket.socketpair()
        environment = {**os.environ, "PYTHONUNBUFFERED": "1", **env}
        # The runner imports this very corral, however this process found it.
        package_root = str(Path(__file__).resolve().parents[2])
        environment["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, environment.get("PYTHONPATH")) if p)
        # ggml attaches gdb to print a native backtrace on an assert: slow, and it buries the assert.
        environment.setdefault("GGML_NO_BACKTRACE", "1")
        try:
            with open(log_path, "wb") as log_file:
                process = subprocess.Popen(
                    [python, "-m", "corral.runtime.runner", "--fd", str(theirs.fileno())],
                    pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, stdout=log_file,
                    stderr=subprocess.STDOUT, env=environment,
                    start_new_session=True,  # Ctrl-C at the terminal reaches the server, which stops runners
                )
        except OSError as exc:
            ours.close()
            raise RunnerFailed(f"{name}: cannot start a runner process ({python}): {exc}") from None
        finally:
            theirs.close()
        log.debug("started runner %d for %s (log %s)", process.pid, name, log_path)
        return cls(name, process, Channel(ours), log_path, lost=lost, cancel_grace=cancel_grace,
                   stop_timeout=stop_timeout)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def alive(self) -> bool:
        return not self._dead

    # --- reading -----------------------------------------------------------------------------------

    def _read(self) -> None:
        problem = None
        try:
            while True:
                message = self.channel.receive()
                if message is None:
                    break
                ident = message.get("id")
                if ident is None:
                    self._control.put(message)
                    continue
                with self._lock:
                    box = self._calls.get(ident)
                if box is not None:
                    box.put(message)
        except (WireError, OSError) as exc:
            problem = str(exc)
        self._ended(problem)

    def _ended(self, problem: str | None) -> None:
        cause = self._exit_cause(problem)
        with self._lock:
            self._dead = True
            self.cause = cause
            boxes = list(self._calls.values())
        self.channel.close()
        if not self._ready and not self._stopping:  # a load that crashed: the runtime never had it
            log.warning("%s: %s", self.name, cause)
        if not self._stopping:
            # Told first, so the requests waiting behind the running one fail with this cause instead
            # of taking their turn on a dead runner.
            try:
                self._lost(cause)
            except Exception:
                log.exception("handling the end of %s's runner failed", self.name)
        for box in boxes:
            box.put({"op": "died"})
        self._control.put({"op": "died"})

    def _exit_cause(self, problem: str | None) -> str:
        """Why the runner ended, in words (waiting for its process to exit); ``problem`` is what broke
        the connection, if something did."""
        if problem is not None and self._kill_reason is None:
            self._kill_reason = f"broke the runner protocol ({problem})"
        if self.process.poll() is None:
            try:
                self.process.wait(timeout=2 if problem is None and self._kill_reason is None else 0.5)
            except subprocess.TimeoutExpired:
                self._kill_now()
        returncode = self.process.wait()
        if self._kill_reason is not None:
            how = f"was stopped: it {self._kill_reason}"
        elif self._stopping and returncode == 0:
            how = "was unloaded"
        else:
            how = describe_exit(returncode)
        tail = log_tail(self.log_path) if returncode != 0 else []
        cause = f"its runner process (pid {self.pid}) {how}"
        if tail:
            cause += "; its log ends: " + " / ".join(tail)
        if returncode != 0:
            cause += f" (log: {self.log_path})"
        return cause

    def _gone(self) -> RunnerFailed:
        return RunnerFailed(f"{self.name}: {self.cause or 'its runner process has ended'}; it is loaded again "
                            f"on the next request")

    # --- control -----------------------------------------------------------------------------------

    def _send(self, message: dict) -> None:
        if self._dead:
            raise self._gone()
        try:
            self.channel.send(message)
        except OSError:
            self._join(self.cancel_grace + 3)
            raise self._gone() from None

    def _control_reply(self, timeout: float | None) -> dict | None:
        try:
            return self._control.get(timeout=timeout)
        except queue.Empty:
            return None

    def load(self, plan: LoadPlan, timeout: float | None) -> dict:
        """Send the load and wait for the runner to be ready; the driver's error when it fails."""
        self._send(load_message(plan))
        reply = self._control_reply(timeout)
        if reply is None:
            self.kill(f"did not finish loading within {timeout:.0f} s")
            raise TimedOut(f"{self.name}: loading took longer than {timeout:.0f} s (its request_timeout); "
                           f"the load was stopped")
        if reply.get("op") == "ready":
            self._ready = True
            return reply
        if reply.get("op") == "failed":
            raise decode_error(reply.get("error"), self.name)
        why = self.cause or f"its runner answered {reply.get('op')!r}"
        raise RunnerFailed(f"{self.name}: the load failed: {why}")

    def driver_memory(self) -> dict[str, int]:
        """What the driver in the runner reports (``LoadedModel.memory()``), or {} when it cannot say."""
        if self._dead:
            return {}
        with self._control_lock:
            self._send({"op": "memory"})
            reply = self._control_reply(10)
        if reply is None or reply.get("op") != "memory":
            return {}
        memory = decode(reply.get("memory"))
        return {k: int(v) for k, v in memory.items()} if isinstance(memory, dict) else {}

    def pids(self) -> list[int]:
        """The runner's process id and those of its children (a backend's helper processes)."""
        import psutil

        try:
            process = psutil.Process(self.pid)
            return [self.pid] + [c.pid for c in process.children(recursive=True)]
        except psutil.Error:
            return []

    def rss(self) -> int:
        """Resident memory of the runner and its children, in bytes."""
        import psutil

        total = 0
        for pid in self.pids():
            try:
                total += psutil.Process(pid).memory_info().rss
            except psutil.Error:
                continue
        return total

    def stop(self) -> None:
        """Unload and end the runner (killed when it does not exit within ``stop_timeout``)."""
        self._stopping = True
        if not self._dead:
            self._ask_unload()
            try:
                self.process.wait(timeout=self.cancel_grace)
            except subprocess.TimeoutExpired:
                self.kill(f"did not exit within {self.stop_timeout:.0f} s of being unloaded")
        self._join(self.cancel_grace + 5)

    def _ask_unload(self) -> None:
        """Tell the model to unload and wait up to ``stop_timeout`` for it to say it has."""
        try:
            with self._control_lock:
                self._send({"op": "unload"})
                self._control_reply(self.stop_timeout)
        except CorralError:  # it is gone already
            pass

    def _join(self, timeout: float) -> None:
        if threading.current_thread() is not self._reader:
            self._reader.join(timeout=timeout)

    def kill(self, reason: str) -> None:
        """Kill the runner now; its requests fail with ``reason`` (said of the runner: "it ...")."""
        if self._dead:
            return
        if self._kill_reason is None:
            self._kill_reason = reason
        self._kill_now()
        self._join(10)

    def _kill_now(self) -> None:
        try:
            self.process.kill()
        except OSError:
            pass

    # --- calls -------------------------------------------------------------------------------------

    def _open(self) -> tuple[int, queue.Queue]:
        ident = next(self._ids)
        box: queue.Queue = queue.Queue()
        with self._lock:
            if self._dead:
                raise self._gone()
            self._calls[ident] = box
        return ident, box

    def _close(self, ident: int) -> None:
        with self._lock:
            self._calls.pop(ident, None)

    def _next(self, ident: int, box: queue.Queue, deadline: float | None, limit: float | None,
              left: threading.Event | None = None) -> dict:
        """The next message for call ``ident``; at the deadline the call is cancelled and TimedOut raised,
        and when ``left`` is set (its client left) it is cancelled and Cancelled raised."""
        while True:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            if left is not None:
                wait = LEFT_POLL if wait is None else min(wait, LEFT_POLL)
            try:
                return box.get(timeout=wait)
            except queue.Empty:
                pass
            if left is not None and left.is_set():
                self._abandon(ident, box)
            if deadline is not None and time.monotonic() >= deadline:
                break
        self.cancel(ident, box, f"did not stop a request that ran past its time limit of {limit:.0f} s")
        ended = "; its runner did not stop it and was ended (the model loads again on the next request)"
        raise TimedOut(f"{self.name}: the request ran past its time limit of {limit:.0f} s and was cancelled"
                       f"{ended if self._dead else ''} (the limit is the model's request_timeout setting)")

    def _abandon(self, ident: int, box: queue.Queue) -> None:
        """Cancel call ``ident``, whose client left. A runner running only this call that does not stop
        it within ``cancel_grace`` is killed (its memory goes back; the next request loads the model
        again); one running other calls too is only told, so their clients keep their answers."""
        with self._lock:
            alone = set(self._calls) <= {ident}
        if alone:
            self.cancel(ident, box, "did not stop a request whose client left")
        else:
            try:
                self._send({"op": "cancel", "id": ident})
            except RunnerFailed:
                pass
        raise Cancelled(f"{self.name}: the client left before the answer was ready; the request was cancelled")

    def cancel(self, ident: int, box: queue.Queue, reason: str) -> None:
        """Cancel call ``ident``; a runner that does not confirm within ``cancel_grace`` is killed."""
        try:
            self._send({"op": "cancel", "id": ident})
        except RunnerFailed:
            return
        deadline = time.monotonic() + self.cancel_grace
        while True:
            try:
                message = box.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.kill(reason)
                return
            if message.get("op") in ("cancelled", "result", "error", "died"):
                return

    def _answer(self, message: dict) -> Any:
        op = message.get("op")
        if op == "result":
            return decode(message.get("value"))
        if op == "error":
            raise decode_error(message.get("error"), self.name)
        if op == "died":
            raise self._gone()
        raise RunnerFailed(f"{self.name}: its runner answered {op!r} out of turn")

    def call(self, task: str, args: Sequence[Any], params: Mapping[str, Any], timeout: float | None) -> Any:
        """Run ``task`` in the runner and return its answer (TimedOut after ``timeout`` seconds; Cancelled
        when :data:`client_left` is set meanwhile)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        ident, box = self._open()
        try:
            self._send({"op": "call", "id": ident, "task": task, "args": encode(list(args)),
                        "params": encode(dict(params)), "stream": False})
            return self._answer(self._next(ident, box, deadline, timeout, client_left.get()))
        finally:
            self._close(ident)

    def stream(self, task: str, args: Sequence[Any], params: Mapping[str, Any], timeout: float | None) -> Iterator[Any]:
        """Stream ``task``'s pieces as the runner sends them; returns what the driver's generator returned.

        Closing the generator early (a client that left) cancels the generation in the runner.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        ident, box = self._open()
        settled = False
        try:
            self._send({"op": "call", "id": ident, "task": task, "args": encode(list(args)),
                        "params": encode(dict(params)), "stream": True})
            while True:
                try:
                    message = self._next(ident, box, deadline, timeout)
                except TimedOut:
                    settled = True
                    raise
                if message.get("op") == "piece":
                    yield decode(message.get("piece"))
                    continue
                settled = True
                return self._answer(message)
        finally:
            if not settled and not self._dead:
                self.cancel(ident, box, f"did not stop a stream within {self.cancel_grace:.0f} s of its "
                                        f"client leaving")
            self._close(ident)


class RunnerHandle(LoadedModel):
    """A model loaded in a runner process, with the interface of the driver's own handle.

    ``memory()`` is the runner's own: its resident memory (and its children's), and its VRAM as the GPU
    vendor plugins report it per process, else as the driver reports it.
    """

    #: Measuring a process is cheap, so ``corral ps`` shows what the runner holds now, not at its load.
    live_memory = True

    def __init__(self, model: Model, settings: Mapping[str, Any], loras: Sequence[LoraRequest], runner: Runner,
                 ready: Mapping[str, Any], vendors: Callable[[], Iterable[GpuVendor]], timeout: float | None) -> None:
        super().__init__(model, settings, loras)
        self.runner = runner
        self.timeout = timeout
        fields = ready.get("request_fields")
        self.request_fields = frozenset(fields) if isinstance(fields, list) else None  # type: ignore[misc]
        self._methods = frozenset(m for m in ready.get("methods") or () if isinstance(m, str))
        if isinstance(ready.get("parallel"), int):
            self.parallel = ready["parallel"]
        self._vendors = vendors

    @property
    def pid(self) -> int:
        """The runner's process id."""
        return self.runner.pid

    def __getattr__(self, name: str) -> Any:
        # Public methods a driver's handle adds beyond the tasks (``render``...) are called in the runner.
        if name.startswith("_") or name not in self.__dict__.get("_methods", ()):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return functools.partial(self._task, name)

    def _task(self, task: str, *args: Any, stream: bool = False, **params: Any) -> Any:
        if stream:
            return self.runner.stream(task, args, params, self.timeout)
        return self.runner.call(task, args, params, self.timeout)

    def chat(self, messages: Sequence[Mapping[str, Any]], *, stream: bool = False, **params: Any) -> Any:
        return self._task("chat", list(messages), stream=stream, **params)

    def complete(self, prompt: str, *, stream: bool = False, **params: Any) -> Any:
        return self._task("complete", prompt, stream=stream, **params)

    def embed(self, texts: Sequence[str], **params: Any) -> list[list[float]]:
        return self._task("embed", list(texts), **params)

    def count_tokens(self, texts: Sequence[str]) -> list[int] | None:
        return self._task("count_tokens", list(texts))

    def rerank(self, query: str, documents: Sequence[str], **params: Any) -> list[tuple[int, float]]:
        return self._task("rerank", query, list(documents), **params)

    def imagine(self, prompt: str, **params: Any) -> list[Any]:
        return self._task("imagine", prompt, **params)

    def speak(self, text: str, **params: Any) -> tuple[Any, int]:
        return self._task("speak", text, **params)

    def memory(self) -> dict[str, int]:
        if not self.runner.alive:
            raise self.runner._gone()
        ram = self.runner.rss()
        vram = process_vram(self._vendors(), self.runner.pids())
        if vram is None:
            vram = self.runner.driver_memory().get("vram", 0)
        return {"ram": ram, "vram": vram}

    def unload(self) -> None:
        self.runner.stop()


def process_vram(vendors: Iterable[GpuVendor], pids: Sequence[int]) -> int | None:
    """GPU memory the processes ``pids`` hold, summed over the vendors that report it per process
    (None: no vendor reports any of them)."""
    total, reported = 0, False
    for vendor in vendors:
        try:
            found = vendor.process_memory(pids)
        except Exception:  # a vendor plugin failing to read must not fail the load
            log.debug("%s could not report per-process memory", vendor.name, exc_info=True)
            continue
        if found:
            reported = True
            total += sum(int(v) for v in found.values())
    return total if reported else None
