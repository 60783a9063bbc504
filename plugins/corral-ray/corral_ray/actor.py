"""The model actor: one loaded model on a worker node, served with the runner's own code.

The actor runs :func:`corral.api.serve_runner` (the runner process's loop: load, ``ready``, calls,
streams, cancels, ``unload``) on a thread of its own, over a channel made of two queues instead of a
socket. The head moves the runner protocol's frames with two remote methods: :meth:`ModelActor.post`
(frames to the model, numbered so they are taken in the order sent) and :meth:`ModelActor.take` (frames
from it, waiting up to a moment for the first and taking every one ready). So a Ray actor speaks exactly
what a runner process speaks, and the head's side is the runner's proxy.
"""

from __future__ import annotations

import os
import queue
import threading
from typing import Any

import ray


class QueueChannel:
    """The runner loop's channel inside the actor: frames in from :meth:`ModelActor.post`, out to
    :meth:`ModelActor.take`."""

    def __init__(self) -> None:
        self.inbox: queue.Queue = queue.Queue()
        self.outbox: queue.Queue = queue.Queue()

    def send(self, message: dict) -> None:
        self.outbox.put(message)

    def receive(self) -> dict | None:
        return self.inbox.get()

    def close(self) -> None:
        pass


# post and take each run on a thread of their own, so a take that waits never holds up a frame to the model.
@ray.remote(num_cpus=0, concurrency_groups={"post": 1, "take": 1, "info": 1})
class ModelActor:
    def __init__(self, name: str) -> None:
        from corral.api import serve_runner

        self.name = name
        self.channel = QueueChannel()
        self._next = 0
        self._early: dict[int, dict] = {}
        # One thread loads the model and runs every call, as in a runner process: a backend's thread
        # pool belongs to the thread that started it.
        self._thread = threading.Thread(target=serve_runner, args=(self.channel,), name=f"corral-model-{name}",
                                        daemon=True)
        self._thread.start()

    @ray.method(concurrency_group="post")
    def post(self, seq: int, message: dict) -> None:
        """Frame number ``seq`` for the model; frames reach it in number order whatever order they arrive."""
        self._early[seq] = message
        while self._next in self._early:
            self.channel.inbox.put(self._early.pop(self._next))
            self._next += 1

    @ray.method(concurrency_group="take")
    def take(self, wait: float) -> list[dict]:
        """The frames the model sent: waits up to ``wait`` seconds for the first, then takes all ready."""
        outbox = self.channel.outbox
        try:
            frames = [outbox.get(timeout=wait)]
        except queue.Empty:
            return []
        while True:
            try:
                frames.append(outbox.get_nowait())
            except queue.Empty:
                return frames

    @ray.method(concurrency_group="info")
    def memory(self) -> dict[str, Any]:
        """This actor's resident memory (with its children's) and, where the node's GPU vendor plugins
        report it per process, its GPU memory (None when none does)."""
        import psutil

        from corral.api import get_host, process_vram

        me = psutil.Process(os.getpid())
        pids = [me.pid] + [c.pid for c in me.children(recursive=True)]
        ram = 0
        for pid in pids:
            try:
                ram += psutil.Process(pid).memory_info().rss
            except psutil.Error:
                continue
        vram = process_vram([cls() for cls in get_host().gpu_vendors], pids)
        return {"ram": ram, "vram": vram, "pid": me.pid}
