"""The memory watchdog: unloads idle models when system memory runs high, and after their keep-alive.

It never touches a model in the middle of a request (or with requests waiting): those are skipped and
looked at again on the next tick.
"""

from __future__ import annotations

import collections
import logging
import re
import threading
import time
from typing import Callable

from corral.runtime.runtime import Loaded, Runtime

log = logging.getLogger("corral.watchdog")

#: System memory use (percent) at which idle models start being unloaded.
MEMORY_THRESHOLD = 90.0


_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: object) -> float:
    """Seconds from a number or text like ``"90"``, ``"30s"``, ``"5m"``, ``"1h"``.

    A negative value, ``"forever"`` or ``"never"`` means "keep loaded until asked" (returned as -1).
    """
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration")
    if isinstance(value, (int, float)):
        return -1.0 if value < 0 else float(value)
    text = str(value).strip().lower()
    if text in ("forever", "never", "inf"):
        return -1.0
    match = re.fullmatch(r"(-?\d+(?:\.\d+)?)\s*([smh]?)", text)
    if match is None:
        raise ValueError(f"{value!r} is not a duration (e.g. 300, 30s, 5m, 1h, forever)")
    seconds = float(match.group(1)) * _UNITS[match.group(2)]
    return -1.0 if seconds < 0 else seconds


def memory_percent() -> float:
    """System memory in use, in percent (psutil's ``virtual_memory().percent``)."""
    import psutil

    return float(psutil.virtual_memory().percent)


class Watchdog:
    """Checks memory and keep-alives every ``interval`` seconds in a daemon thread (or on :meth:`tick`)."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        threshold: float = MEMORY_THRESHOLD,
        interval: float = 2.0,
        memory: Callable[[], float] = memory_percent,
    ) -> None:
        self.runtime = runtime
        self.threshold = threshold
        self.interval = interval
        self.memory = memory
        #: What the watchdog did, newest last (shown by ``/corral/status``).
        self.events: list[dict] = []
        #: Models unloaded so far, by reason (``keep_alive``, ``memory``; shown by /metrics).
        self.evictions: collections.Counter[str] = collections.Counter()
        self._pressure = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="corral-watchdog", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.tick()
            except Exception:  # the watchdog must outlive a failing unload
                log.exception("watchdog tick failed")

    def _note(self, action: str, name: str, detail: str) -> None:
        self.events.append({"time": time.time(), "action": action, "model": name, "detail": detail})
        del self.events[:-50]

    def tick(self, now: float | None = None) -> list[str]:
        """One check: expire idle models past their keep-alive, then relieve memory pressure.

        Returns the names of the models it unloaded.
        """
        now = time.monotonic() if now is None else now
        unloaded = []
        for entry in self.runtime.entries():
            left = entry.expires_in(now)
            if left is not None and left <= 0 and self._unload(entry, "keep-alive expired", "keep_alive"):
                unloaded.append(entry.model.name)
        unloaded += self.relieve()
        return unloaded

    def relieve(self) -> list[str]:
        """While memory use is at or above the threshold, unload the least recently used idle model."""
        used = self.memory()
        if used < self.threshold:
            self._pressure = False
            return []
        if not self._pressure:  # warn once per episode, not on every tick
            self._pressure = True
            log.warning("system memory at %.0f %% (threshold %.0f %%)", used, self.threshold)
            self._note("warning", "", f"system memory at {used:.0f} % (threshold {self.threshold:.0f} %)")
        unloaded: list[str] = []
        tried: set[str] = set()
        while used >= self.threshold:
            idle = [e for e in self.runtime.entries() if e.model.id not in tried and e.queue.idle]
            if not idle:
                break
            victim = min(idle, key=lambda e: e.last_used)
            tried.add(victim.model.id)
            log.warning("unloading %s, the least recently used idle model, to free memory", victim.model.name)
            if self._unload(victim, f"system memory at {used:.0f} %"):
                unloaded.append(victim.model.name)
            used = self.memory()
        return unloaded

    def _unload(self, entry: Loaded, why: str, reason: str = "memory") -> bool:
        done = self.runtime.unload_if_idle(entry, f"{entry.model.name} was unloaded: {why}")
        if done:
            self.evictions[reason] += 1
            self._note("unloaded", entry.model.name, why)
        return done
