"""Talking to a running Corral server from the CLI: find it, start it in the background, call it, stop it.

Only ``corral load`` (once its model passed its checks) and ``corral serve`` start a server; commands
that only read (``corral ps``, ``corral unload``) use :func:`connect` and never start one.

Standard library only (urllib), so CLI commands stay quick to start. Server errors come back as the
same :class:`corral.errors.CorralError` subclasses the server raised, so the CLI prints the same line and
exits with the same code as an in-process run would.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Iterator

from corral.errors import CorralError, ServerUnavailable, error_code
from corral.server.state import ServerState, log_path, read_state

#: Seconds a background server may take to answer its first request.
START_TIMEOUT = 60.0


def _error_classes() -> dict[str, type[CorralError]]:
    import corral.driver  # noqa: F401 - Unsupported lives there

    found: dict[str, type[CorralError]] = {}
    todo: list[type[CorralError]] = [CorralError]
    while todo:
        cls = todo.pop()
        found.setdefault(error_code(cls), cls)
        todo.extend(cls.__subclasses__())
    return found


def raise_for_body(status: int, body: bytes) -> None:
    """Raise the CorralError an error response describes."""
    try:
        error = json.loads(body)["error"]
        message, code = str(error["message"]), error.get("code")
    except (ValueError, KeyError, TypeError):
        raise ServerUnavailable(f"the Corral server answered HTTP {status}: {body[:200]!r}") from None
    raise error_for(code, message)


def error_for(code: str | None, message: str) -> CorralError:
    """The CorralError of ``code`` (as :func:`corral.errors.error_code` names it) with ``message``:
    what a server's error body or a failed job says, raised here as the server raised it."""
    cls = _error_classes().get(code or "", CorralError)
    try:
        return cls(message)
    except TypeError:  # an error class with a different constructor
        return CorralError(message)


class Client:
    """Calls one server's HTTP API (``CORRAL_API_KEY`` is sent when set)."""

    def __init__(self, state: ServerState, api_key: str | None = None) -> None:
        self.state = state
        self.url = state.url
        self.api_key = api_key if api_key is not None else os.environ.get("CORRAL_API_KEY") or None

    def _request(self, method: str, path: str, body: Any = None, timeout: float | None = None):
        import urllib.error  # here, not at the top: urllib costs every CLI command ~40 ms to import
        import urllib.request

        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.api_key:
            request.add_header("Authorization", f"Bearer {self.api_key}")
        try:
            return urllib.request.urlopen(request, timeout=timeout)
        except urllib.error.HTTPError as exc:
            if exc.code == 401:
                hint = "set CORRAL_API_KEY to its key" if not self.api_key else "CORRAL_API_KEY is not its key"
                raise CorralError(f"the Corral server at {self.url} requires an API key: {hint}") from None
            raise_for_body(exc.code, exc.read())
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ServerUnavailable(f"the Corral server at {self.url} does not answer ({reason})") from None

    def get(self, path: str, timeout: float | None = None) -> Any:
        with self._request("GET", path, timeout=timeout) as response:
            return json.loads(response.read())

    def post(self, path: str, body: Any) -> Any:
        with self._request("POST", path, body) as response:
            return json.loads(response.read())

    def post_bytes(self, path: str, body: Any) -> bytes:
        with self._request("POST", path, body) as response:
            return response.read()

    def events(self, path: str, body: Any) -> Iterator[dict]:
        """POST and read a server-sent event stream: each ``data:`` JSON object, until ``[DONE]``."""
        with self._request("POST", path, body) as response:
            for raw in response:
                line = raw.decode("utf-8").strip()
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    return
                event = json.loads(data)
                if "error" in event:
                    raise_for_body(500, json.dumps(event).encode())
                yield event

    def healthy(self, timeout: float = 2.0) -> bool:
        """Whether the server answers at all (a 401 counts: it is alive, the key is another matter)."""
        try:
            self.get("/corral/health", timeout=timeout)
        except ServerUnavailable:
            return False
        except CorralError:
            return True
        return True


def connect(home: Path | None = None) -> Client | None:
    """A client for the server running for this library, or None when none runs."""
    state = read_state(home)
    if state is None:
        return None
    client = Client(state)
    return client if client.healthy() else None


def connect_or_start(home: Path | None = None, timeout: float = START_TIMEOUT) -> Client:
    """A client for the running server, starting one in the background first when none runs."""
    client = connect(home)
    if client is not None:
        return client
    try:
        return Client(start_background(home, timeout))
    except ServerUnavailable:
        client = connect(home)  # another command may have started one at the same moment
        if client is not None:
            return client
        raise


def _last_line(path: Path) -> str:
    try:
        lines = [l for l in path.read_text(errors="replace").splitlines() if l.strip()]
    except OSError:
        return ""
    errors = [l[len("Error:"):] for l in lines if l.startswith("Error:")]
    return (errors or lines or [""])[-1].strip()


def start_background(home: Path | None = None, timeout: float = START_TIMEOUT) -> ServerState:
    """Start ``corral serve`` detached (host and port from CORRAL_HOST / CORRAL_PORT) and wait for it."""
    from corral.home import corral_home

    home = home or corral_home()
    home.mkdir(parents=True, exist_ok=True)
    log = log_path(home)
    env = {**os.environ, "CORRAL_HOME": str(home)}
    import subprocess

    with open(log, "ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "corral", "serve"],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # outlives this command and its terminal
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = process.poll()
        if code is not None:
            detail = _last_line(log) or f"exit code {code}"
            raise ServerUnavailable(f"the Corral server did not start: {detail} (log: {log})")
        state = read_state(home)
        if state is not None and state.pid == process.pid and Client(state).healthy():
            return state
        time.sleep(0.1)
    process.terminate()
    raise ServerUnavailable(f"the Corral server did not answer within {timeout:.0f} s (log: {log})")


#: Seconds ``corral stop`` waits for the server to unload its models and exit.
STOP_TIMEOUT = 180.0


def stop_server(home: Path | None = None, timeout: float = STOP_TIMEOUT) -> ServerState | None:
    """Stop the server running for this library, gracefully (every model unloaded after its request in
    progress); the state of the server that stopped, or None when none was running.

    Asks the server itself (``POST /corral/stop``); a server that does not answer is sent SIGTERM, which
    it handles the same way.
    """
    state = read_state(home)
    if state is None:
        return None
    client = Client(state)
    try:
        client.post("/corral/stop", {})
    except ServerUnavailable:
        if state.pid == os.getpid():
            raise
        import signal

        os.kill(state.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = read_state(home)
        if current is None or current.pid != state.pid or current.started != state.started:
            _wait_exit(state.pid, max(1.0, deadline - time.monotonic()))
            return state
        time.sleep(0.1)
    raise ServerUnavailable(
        f"the Corral server (pid {state.pid}) is still unloading after {timeout:.0f} s; see {log_path(home)}"
    )


def _wait_exit(pid: int, timeout: float) -> None:
    """Wait for process ``pid`` to end (a server in this very process only stops serving)."""
    if pid == os.getpid():
        return
    import psutil

    deadline = time.monotonic() + timeout
    try:
        process = psutil.Process(pid)
        while time.monotonic() < deadline:
            try:
                process.wait(0.1)
                return
            except psutil.TimeoutExpired:
                if process.status() == psutil.STATUS_ZOMBIE:  # ended; its parent has not reaped it yet
                    return
    except psutil.NoSuchProcess:
        pass
