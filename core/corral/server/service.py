"""What the HTTP routes share: the runtime, the watchdog, and the async bridge to them.

Queue admission happens in the event loop (a full queue is refused at once, no thread is held by a
waiting request); loads and driver calls run in worker threads.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from typing import Any, Callable, Iterable

from corral import known
from corral.errors import Busy, PluginMissing
from corral.runtime.executor import LEFT_POLL, client_left
from corral.runtime.queue import QueueClosed, Turn
from corral.runtime.runtime import Loaded, Runtime, check_task
from corral.runtime.watchdog import Watchdog
from corral.server.responses import current_request

#: What each route needs, in words, and the first-party plugins that provide it.
NEEDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "chat": ("chat", (known.LLAMACPP, known.TRANSFORMERS)),
    "complete": ("text completion", (known.LLAMACPP, known.TRANSFORMERS)),
    "embed": ("embeddings", (known.SENTENCE_TRANSFORMERS,)),
    "rerank": ("reranking", (known.SENTENCE_TRANSFORMERS,)),
    "imagine": ("image generation", (known.DIFFUSERS,)),
    "speak": ("speech synthesis", (known.KOKORO,)),
}

class Service:
    """The server's state: one runtime, its watchdog, and thread limits for loads and driver calls."""

    def __init__(self, runtime: Runtime, watchdog: Watchdog | None = None) -> None:
        import anyio

        self.runtime = runtime
        self.watchdog = watchdog
        self.started = time.time()
        self.address: tuple[str, int] | None = None
        # Separate pools: loads waiting on each other never starve the requests of loaded models.
        self.load_limiter = anyio.CapacityLimiter(16)
        self.work_limiter = anyio.CapacityLimiter(64)
        self._checks: dict[type, bool] = {}

    async def in_thread(self, fn: Callable, *args: Any, load: bool = False, **kwargs: Any) -> Any:
        import anyio

        limiter = self.load_limiter if load else self.work_limiter
        return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs), limiter=limiter)

    def usable(self, driver: type) -> bool:
        """Whether a driver's backend is installed (checked once per process)."""
        if driver not in self._checks:
            try:
                self._checks[driver] = bool(driver.check().available)
            except Exception:  # a broken check means the driver cannot serve
                self._checks[driver] = False
        return self._checks[driver]

    def require_plugin(self, task: str) -> None:
        """Answer "needs plugin X" when no installed driver can do ``task`` at all."""
        categories = self.runtime.host.task_categories(task)
        if any(d.categories & categories for d in self.runtime.host.drivers):
            return
        if task not in NEEDS:
            raise PluginMissing(f"no installed plugin can {task}: install the plugin that provides it")
        what, dists = NEEDS[task]
        install = " or ".join(dists)
        raise PluginMissing(
            f"{what} needs the {install} plugin: pip install {dists[0]}"
            + (f" (GGUF models) or pip install {dists[1]} (Hugging Face models)" if len(dists) > 1 else ""),
            distribution=dists[0],
        )

    async def enter(self, ref: str, task: str) -> tuple[Loaded, Turn]:
        """Load ``ref`` if needed, then wait for its turn (503 at once when its queue is full)."""
        self.require_plugin(task)
        known = self.runtime.find(ref)
        check_task(known.model if known else await self.in_thread(self.runtime.resolve, ref), task, self.runtime.host)
        for _ in range(3):
            entry = self.runtime.find(ref)
            if entry is None:
                entry = await self.in_thread(self.runtime.ensure, ref, load=True)
            try:
                turn = entry.queue.enter()
            except QueueClosed:
                continue  # replaced between lookup and entry: look it up again
            await turn.wait_async()
            return entry, turn
        raise Busy(f"{ref} keeps being unloaded and loaded again; retry later")

    async def run(self, ref: str, task: str, call: Callable[[Loaded], Any]) -> tuple[Loaded, Any]:
        """Run ``call(entry)`` in a worker thread during ``ref``'s turn. When the route's client leaves
        meanwhile, a call to a runner process is cancelled (:data:`corral.runtime.executor.client_left`)."""
        entry, turn = await self.enter(ref, task)
        try:
            return entry, await self._watched(call, entry)
        finally:
            entry.touch()
            turn.release()

    async def _watched(self, call: Callable[[Loaded], Any], entry: Loaded) -> Any:
        request = current_request.get()
        if request is None:
            return await self.in_thread(call, entry)
        left = threading.Event()
        token = client_left.set(left)
        try:  # the worker thread runs in a copy of this context, the event in it
            work = asyncio.ensure_future(self.in_thread(call, entry))
        finally:
            client_left.reset(token)
        watcher = asyncio.ensure_future(_watch(request, left))
        try:
            return await work
        finally:
            watcher.cancel()

    def servable_models(self) -> Iterable[Any]:
        """Library models that an installed plugin can serve (this thread's database connection)."""
        library = self.runtime.lib()
        for model in library.store.list_models():
            if any(self.usable(d) for d in library.host.drivers_for(model)):
                yield model


async def _watch(request: Any, left: threading.Event) -> None:
    """Set ``left`` once ``request``'s client has disconnected."""
    while not await request.is_disconnected():
        await asyncio.sleep(LEFT_POLL)
    left.set()


def service_of(request: Any) -> Service:
    """The server's :class:`Service` behind a request: how routes (a plugin's too) reach the runtime."""
    return request.app.state.service
