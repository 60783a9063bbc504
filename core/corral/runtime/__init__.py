"""The runtime: loaded models under the load rules, their request queues, and the memory watchdog."""

from corral.runtime.queue import MAX_WAITING, RequestQueue, Turn
from corral.runtime.runtime import KEEP_ALIVE, Loaded, LoadedInfo, Runtime

__all__ = ["KEEP_ALIVE", "MAX_WAITING", "Loaded", "LoadedInfo", "RequestQueue", "Runtime", "Turn"]
