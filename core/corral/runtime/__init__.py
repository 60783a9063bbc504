"""The runtime: loaded models under the load rules, their request queues, the memory watchdog, and the
executors that place loaded models (in this process, or each in a runner process)."""

from corral.runtime.executor import Executor, InProcess, RunnerProcesses
from corral.runtime.queue import MAX_WAITING, RequestQueue, Turn
from corral.runtime.runtime import KEEP_ALIVE, Loaded, LoadedInfo, Runtime

__all__ = [
    "KEEP_ALIVE", "MAX_WAITING", "Executor", "InProcess", "Loaded", "LoadedInfo", "RequestQueue", "RunnerProcesses",
    "Runtime", "Turn",
]  # fmt: skip
