"""A started server for end-to-end tests and benchmarks: over a fresh runtime of a library in this
process, or ``corral serve`` in a process of its own."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator, Mapping


@contextlib.contextmanager
def serving(library: Any, *, executor: Any = None, **options: Any) -> Iterator[Any]:
    """``with serving(library) as server: httpx.get(server.url + "/v1/models")``: a
    :class:`corral.server.serve.ServerThread` (``options`` are its keyword arguments) around a new
    :class:`corral.runtime.Runtime` of ``library`` (``executor``: where its models live; in this process by
    default). Leaving the block stops the server and closes the runtime."""
    from corral.runtime import Runtime
    from corral.server.serve import ServerThread

    runtime = Runtime(library, executor=executor)
    try:
        with ServerThread(runtime, **options) as server:
            yield server
    finally:
        runtime.close()


def serve_process(home: Path, *args: str, env: Mapping[str, str] | None = None, log: Path | None = None,
                  timeout: float = 120) -> tuple[subprocess.Popen, Any]:
    """``corral serve --port 0 ARGS`` for the library in ``home``, in a process of its own, and its
    :class:`corral.server.state.ServerState` (``url``, ``host``, ``pid``) once the state file names it.

    ``env`` is the process's environment (default: this one's), with ``CORRAL_HOME`` set to ``home``; its
    output goes to ``log`` (default ``home/serve.log``). A server that exits or does not start within
    ``timeout`` seconds raises :class:`RuntimeError` with the end of its log.
    """
    from corral.server.state import read_state

    home = Path(home)
    home.mkdir(parents=True, exist_ok=True)
    log = log or home / "serve.log"
    environ = {**(os.environ if env is None else env), "CORRAL_HOME": str(home)}
    with open(log, "ab") as out:
        process = subprocess.Popen([sys.executable, "-m", "corral", "serve", "--port", "0", *args], env=environ,
                                   stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while (state := read_state(home)) is None or state.pid != process.pid:
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            process.wait(30)
            raise RuntimeError(f"corral serve did not start; the end of {log}:\n"
                               + log.read_text(errors="replace")[-3000:])
        time.sleep(0.05)
    return process, state
