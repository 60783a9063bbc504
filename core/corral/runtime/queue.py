"""Per-model request queue: up to ``slots`` requests run at once (1 for most drivers; a batching driver
declares more), a bounded number wait, the next is refused.

Admission never blocks: :meth:`RequestQueue.enter` either grants the turn, queues it, or raises
:class:`corral.errors.QueueFull` at once. Waiting works from a thread (:meth:`Turn.wait`) and from an
asyncio event loop (:meth:`Turn.wait_async`) alike, so the HTTP server decides "busy" in its event loop
without tying up a worker thread per waiting request.
"""

from __future__ import annotations

import asyncio
import collections
import math
import threading
import time
from typing import Any

from corral.errors import Busy, QueueFull

#: Requests that may wait for one model while another is being served.
MAX_WAITING = 50


class QueueClosed(Busy):
    """The model was unloaded (or is being unloaded) before this request's turn came."""


class Turn:
    """One request's place in a model's queue. Release it (or use ``with``) when the work is done."""

    def __init__(self, queue: RequestQueue) -> None:
        self._queue = queue
        self._event = threading.Event()
        self._error: BaseException | None = None
        self._future: asyncio.Future | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.granted = False
        self.released = False
        self.granted_at = 0.0

    # Called by the queue with its lock held.
    def _grant(self) -> None:
        self.granted = True
        self.granted_at = time.monotonic()
        self._event.set()
        self._wake()

    def _fail(self, error: BaseException) -> None:
        self._error = error
        self._event.set()
        self._wake()

    def _wake(self) -> None:
        future, loop = self._future, self._loop
        if future is None or loop is None:
            return

        def settle() -> None:
            if not future.done():
                future.set_result(None)

        try:
            loop.call_soon_threadsafe(settle)
        except RuntimeError:  # the loop is already closed: nobody waits any more
            pass

    def wait(self, timeout: float | None = None) -> Turn:
        """Block this thread until the turn comes; raises when the model went away meanwhile."""
        if not self._event.wait(timeout):
            self.cancel()
            raise Busy(f"{self._queue.name} stayed busy for {timeout:.0f} s; try again later")
        if self._error is not None:
            raise self._error
        return self

    async def wait_async(self) -> Turn:
        """Wait in the running event loop (no thread held) until the turn comes."""
        loop = asyncio.get_running_loop()
        with self._queue._lock:
            if not self._event.is_set():
                self._loop = loop
                self._future = loop.create_future()
        if self._future is not None:
            try:
                await self._future
            except asyncio.CancelledError:
                self.cancel()
                raise
        if self._error is not None:
            raise self._error
        return self

    def release(self) -> None:
        """End this request's turn (idempotent); the next waiting request gets it."""
        self._queue._release(self)

    def cancel(self) -> None:
        """Give up: leave the queue if still waiting, or release the turn if it was granted."""
        self._queue._cancel(self)

    def __enter__(self) -> Turn:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


class RequestQueue:
    """The requests for one loaded model: up to ``slots`` served at once, at most ``max_waiting`` waiting
    (FIFO)."""

    def __init__(self, name: str, max_waiting: int = MAX_WAITING, slots: int = 1) -> None:
        self.name = name
        self.max_waiting = max_waiting
        self.slots = max(1, int(slots))
        self._lock = threading.Lock()
        self._active: set[Turn] = set()
        self._waiting: collections.deque[Turn] = collections.deque()
        self._closed: str | None = None
        self._drained = threading.Condition(self._lock)
        # Moving average of how long one request holds the model, for Retry-After.
        self._service_s = 1.0
        self.served = 0
        self.rejected = 0

    # --- state ---------------------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """At least one request is running."""
        return bool(self._active)

    @property
    def running(self) -> int:
        """Requests running now (at most :attr:`slots`)."""
        return len(self._active)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @property
    def idle(self) -> bool:
        """No request running and none waiting."""
        with self._lock:
            return not self._active and not self._waiting

    def retry_after(self) -> int:
        """Seconds a refused client should wait: the queue ahead of it at the recent pace (1..600)."""
        rounds = len(self._waiting) // self.slots + 1
        return int(min(600, max(1, math.ceil(self._service_s * rounds))))

    # --- admission -----------------------------------------------------------------------------------

    def enter(self) -> Turn:
        """Take a place: the turn at once when a slot is free, a waiting place, or :class:`QueueFull`
        immediately."""
        turn = Turn(self)
        with self._lock:
            if self._closed is not None:
                raise QueueClosed(self._closed)
            if len(self._active) < self.slots and not self._waiting:
                self._active.add(turn)
                turn._grant()
                return turn
            if len(self._waiting) >= self.max_waiting:
                self.rejected += 1
                running = len(self._active)
                error = QueueFull(
                    f"{self.name} is busy: {running} request{'s' if running != 1 else ''} running and "
                    f"{len(self._waiting)} waiting (the most allowed); retry later"
                )
                error.retry_after = self.retry_after()
                raise error
            self._waiting.append(turn)
            return turn

    def _release(self, turn: Turn) -> None:
        with self._lock:
            if turn.released or turn not in self._active:
                return
            turn.released = True
            self.served += 1
            elapsed = time.monotonic() - turn.granted_at
            self._service_s = 0.8 * self._service_s + 0.2 * elapsed
            self._active.discard(turn)
            if self._waiting and self._closed is None:
                nxt = self._waiting.popleft()
                self._active.add(nxt)
                nxt._grant()
            elif not self._active:
                self._drained.notify_all()

    def _cancel(self, turn: Turn) -> None:
        with self._lock:
            if turn in self._waiting:
                self._waiting.remove(turn)
                return
        if turn.granted:
            self._release(turn)

    # --- closing -------------------------------------------------------------------------------------

    def close(self, reason: str) -> None:
        """Refuse new requests and fail the waiting ones with ``reason``; the running ones finish."""
        with self._lock:
            self._closed = reason
            while self._waiting:
                self._waiting.popleft()._fail(QueueClosed(reason))
            if not self._active:
                self._drained.notify_all()

    def close_if_idle(self, reason: str) -> bool:
        """Close only when nothing runs or waits (the watchdog never interrupts a request)."""
        with self._lock:
            if self._closed is not None or self._active or self._waiting:
                return False
            self._closed = reason
            return True

    def wait_drained(self, timeout: float | None = None) -> bool:
        """After :meth:`close`, wait until the running requests (if any) have finished."""
        with self._lock:
            return self._drained.wait_for(lambda: not self._active, timeout)
