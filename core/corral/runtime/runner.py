"""The runner process: one loaded model, served to the Corral server over a socket it inherits.

Started by :class:`corral.runtime.executor.RunnerProcesses` as ``python -m corral.runtime.runner --fd N``
with stdout and stderr going to the runner's log file (the backend's own messages, a GGML assert, a
Python traceback from :mod:`faulthandler` on a crash). The conversation, in :mod:`corral.runtime.wire`
frames:

* server → runner ``{"op": "load", "driver": "module:Class", "model": {...}, "settings": {...},
  "loras": [...], "sys_path": [...]}``; runner → server ``{"op": "ready", "pid", "memory",
  "request_fields", "methods", "parallel"}`` or ``{"op": "failed", "error"}``.
* ``{"op": "call", "id", "task", "args", "params", "stream"}``, answered by ``piece`` frames (streams)
  and then one ``result``, ``error`` or (after ``{"op": "cancel", "id"}``) ``cancelled`` frame.
* ``{"op": "memory"}`` → ``{"op": "memory", "memory"}``: what the driver itself reports.
* ``{"op": "unload"}`` → ``{"op": "unloaded"}``, and the process exits.

Calls run on the thread that loaded the model (one at a time, unless the model runs several at once),
while a reader thread takes the frames, so a cancel is read while a call runs; a stream checks for its
cancel between pieces. When the server goes away (the socket closes), the runner exits at once.
"""

from __future__ import annotations

import argparse
import faulthandler
import importlib
import os
import queue
import signal
import socket
import sys
import threading
import traceback
from typing import Any, Iterator

from corral.convert import from_data
from corral.errors import CorralError, Unsupported
from corral.records import LoraRequest, Model
from corral.runtime.wire import Channel, WireError, decode, encode, encode_error

#: Tasks and helpers of a loaded model the server may call (plus what a driver's handle adds publicly).
TASK_METHODS = ("chat", "complete", "embed", "rerank", "imagine", "speak", "count_tokens")


def import_driver(path: str) -> type:
    """The driver class named ``module:Qualified.Name``."""
    module_name, _, qualname = path.partition(":")
    target: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        target = getattr(target, part)
    return target


def public_methods(handle: Any) -> list[str]:
    """The names the server may call on ``handle``: the tasks, and its other public methods."""
    names = set(TASK_METHODS)
    for name in dir(type(handle)):
        if name.startswith("_") or name in ("memory", "unload"):
            continue
        if callable(getattr(type(handle), name, None)):
            names.add(name)
    return sorted(names)


def load(message: dict) -> Any:
    """Load the model a ``load`` message describes with its driver; the live handle."""
    for entry in message.get("sys_path") or ():
        if isinstance(entry, str) and entry not in sys.path:
            sys.path.append(entry)
    driver = import_driver(str(message["driver"]))
    model = from_data(message["model"], Model)
    loras = [from_data(item, LoraRequest) for item in message.get("loras") or ()]
    return driver().load(model, dict(message.get("settings") or {}), loras)


class Served:
    """The loaded model's side of the conversation."""

    def __init__(self, channel: Channel, handle: Any) -> None:
        self.channel = channel
        self.handle = handle
        self.methods = frozenset(public_methods(handle))
        self._cancels: dict[int, threading.Event] = {}
        self._lock = threading.Lock()

    def send(self, message: dict) -> None:
        try:
            self.channel.send(message)
        except WireError as exc:  # an answer too large or of a type the protocol lacks
            if message.get("op") in ("result", "piece"):
                self.channel.send({"op": "error", "id": message.get("id"), "error": encode_error(exc)})
            else:
                raise
        except OSError:
            os._exit(0)  # the server is gone

    def serve(self) -> None:
        """Run calls on this thread, the one that loaded the model, until ``unload``; a reader thread
        takes the frames meanwhile (cancels, memory questions) and ends the process when the server goes
        away. A model that runs several requests at once (``parallel`` > 1) gets a thread per call."""
        work: queue.SimpleQueue = queue.SimpleQueue()
        reader = threading.Thread(target=self._read, args=(work,), name="corral-runner-reader", daemon=True)
        reader.start()
        while True:
            message = work.get()
            if message is None:  # unload
                self.handle.unload()
                self.send({"op": "unloaded"})
                return
            with self._lock:
                cancel = self._cancels.get(int(message["id"])) or threading.Event()
            self._call(message, cancel)

    def _read(self, work: queue.SimpleQueue) -> None:
        parallel = getattr(self.handle, "parallel", None)
        concurrent = isinstance(parallel, int) and parallel > 1
        while True:
            try:
                message = self.channel.receive()
            except WireError as exc:
                print(f"corral runner: protocol error from the server: {exc}", file=sys.stderr, flush=True)
                os._exit(3)
            if message is None:
                os._exit(0)  # the server closed the connection (or died): nothing left to serve
            op = message.get("op")
            if op == "call":
                cancel = threading.Event()
                with self._lock:
                    self._cancels[int(message["id"])] = cancel
                if concurrent:
                    threading.Thread(target=self._call, args=(message, cancel), daemon=True,
                                     name=f"corral-call-{message['id']}").start()
                else:
                    # One thread for every call: a backend's thread pool (OpenMP's, llama.cpp's) belongs
                    # to the thread that started it; switching threads costs llama.cpp half its speed.
                    work.put(message)
            elif op == "cancel":
                with self._lock:
                    event = self._cancels.get(int(message.get("id", -1)))
                if event is not None:
                    event.set()
            elif op == "memory":
                self.send({"op": "memory", "memory": encode(self._memory())})
            elif op == "unload":
                with self._lock:
                    for event in self._cancels.values():
                        event.set()
                work.put(None)
                return

    def _memory(self) -> dict[str, int]:
        try:
            return {k: int(v) for k, v in (self.handle.memory() or {}).items()}
        except Exception:
            traceback.print_exc()
            return {}

    def _call(self, message: dict, cancel: threading.Event) -> None:
        ident = int(message["id"])
        try:
            task = str(message.get("task"))
            if task not in self.methods:
                raise Unsupported(f"the loaded model has no method {task!r}")
            args = decode(message.get("args") or [])
            params = decode(message.get("params") or {})
            method = getattr(self.handle, task)
            if message.get("stream"):
                self._stream(ident, method(*args, stream=True, **params), cancel)
            else:
                value = method(*args, **params)
                if cancel.is_set():
                    self.send({"op": "cancelled", "id": ident})
                else:
                    self.send({"op": "result", "id": ident, "value": encode(value)})
        except BaseException as exc:
            if not isinstance(exc, CorralError):
                traceback.print_exc()
                sys.stderr.flush()
            self.send({"op": "error", "id": ident, "error": encode_error(exc)})
        finally:
            with self._lock:
                self._cancels.pop(ident, None)

    def _stream(self, ident: int, stream: Iterator[Any], cancel: threading.Event) -> None:
        iterator = iter(stream)
        try:
            while True:
                if cancel.is_set():
                    self.send({"op": "cancelled", "id": ident})
                    return
                try:
                    piece = next(iterator)
                except StopIteration as end:
                    self.send({"op": "result", "id": ident, "value": encode(end.value)})
                    return
                self.send({"op": "piece", "id": ident, "piece": encode(piece)})
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m corral.runtime.runner", description=__doc__.split("\n")[0])
    parser.add_argument("--fd", type=int, required=True, help="the inherited socket to the server")
    args = parser.parse_args(argv)
    faulthandler.enable()  # a native crash leaves the Python stacks in the log
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server stops its runners itself, after Ctrl-C
    return run(Channel(socket.socket(fileno=args.fd)))


def run(channel: Any) -> int:
    """Serve one model over ``channel`` (anything with the :class:`Channel` ``send`` / ``receive``): wait
    for its ``load`` frame, load it, answer ``ready`` (or ``failed``), then serve calls until ``unload``.
    A cluster's model actor runs this over its own channel."""
    first = channel.receive()
    if first is None or first.get("op") != "load":
        return 0
    try:
        handle = load(first)
    except BaseException as exc:
        if not isinstance(exc, CorralError):
            traceback.print_exc()
        channel.send({"op": "failed", "error": encode_error(exc)})
        return 0
    served = Served(channel, handle)
    fields = getattr(handle, "request_fields", None)
    parallel = getattr(handle, "parallel", None)  # requests the model runs at once, when it says
    served.send({
        "op": "ready",
        "pid": os.getpid(),
        "memory": encode(served._memory()),
        "request_fields": sorted(fields) if fields is not None else None,
        "methods": sorted(served.methods),
        "parallel": parallel if isinstance(parallel, int) and not isinstance(parallel, bool) else None,
    })
    served.serve()
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip interpreter teardown: a backend's own threads and atexit hooks must not keep the runner alive.
    os._exit(code)
