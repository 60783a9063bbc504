"""Running the server: ``corral serve`` in the foreground, or :class:`ServerThread` inside a program.

The listening socket is bound before the server starts, so a port in use is one clear error, and port 0
picks a free port (the state file and :attr:`ServerThread.url` say which).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

from corral import __version__
from corral.errors import Conflict, CorralError
from corral.runtime.queue import MAX_WAITING
from corral.runtime.runtime import KEEP_ALIVE, Runtime
from corral.runtime.watchdog import MEMORY_THRESHOLD, Watchdog
from corral.server.limits import Limits, is_loopback
from corral.server.state import DEFAULT_HOST, ServerState, clear_state, read_state, write_state


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: any free port)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise CorralError(f"cannot listen on {host!r}: {exc.strerror}") from None
    sock = None
    try:
        # proto must say TCP: asyncio sets TCP_NODELAY only on such sockets, and without it every
        # response waits ~40 ms for the client's delayed ACK (Nagle).
        sock = socket.socket(family, kind, proto or socket.IPPROTO_TCP)
        if os.name != "nt":  # a restarted server can take its port back at once
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        if sock is not None:
            sock.close()
        raise CorralError(
            f"cannot listen on {host}:{port}: {exc.strerror}; pick another --port (or CORRAL_PORT)"
        ) from None
    return sock


def _uvicorn_server(app: Any, log_level: str, *, on_start=None, on_stop=None, limits: Limits | None = None) -> Any:
    import uvicorn

    from corral.server.limits import guarded_protocol

    limits = limits or Limits()

    class Server(uvicorn.Server):
        async def startup(self, sockets: list | None = None) -> None:
            await super().startup(sockets)
            if self.started and on_start is not None:
                on_start()

        async def shutdown(self, sockets: list | None = None) -> None:
            try:
                await super().shutdown(sockets)
            finally:
                if on_stop is not None:
                    on_stop()
                # uvicorn re-raises the signal that stopped it once it has shut down; the shutdown was
                # graceful, so `corral serve` ends normally (exit 0) instead of dying of that signal.
                captured = getattr(self, "_captured_signals", None)
                if isinstance(captured, list):
                    captured.clear()

    config = uvicorn.Config(
        app,
        log_level=log_level,
        timeout_graceful_shutdown=10,
        lifespan="on",
        access_log=log_level == "debug",
        http=guarded_protocol(limits.header_timeout),  # slow request headers are dropped
        limit_concurrency=limits.max_connections,
    )
    return Server(config)


def _log_to_stderr(level: str) -> None:
    """Loads, unloads and watchdog warnings on stderr, beside uvicorn's own lines."""
    logger = logging.getLogger("corral")
    if not any(getattr(h, "_corral", False) for h in logger.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)-9s %(message)s"))
        handler._corral = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.setLevel(level.upper())


def serve(
    *,
    host: str = DEFAULT_HOST,
    port: int = 0,
    api_key: str | None = None,
    keep_alive: float | None = KEEP_ALIVE,
    memory_threshold: float = MEMORY_THRESHOLD,
    max_waiting: int = MAX_WAITING,
    home: Path | None = None,
    log_level: str = "info",
    announce: Any = print,
    guards: Any = None,
    insecure_no_auth: bool = False,
    executor: Any = None,
    executor_name: str | None = None,
) -> None:
    """Serve until interrupted (SIGINT / SIGTERM); every model is unloaded before returning.

    ``executor`` (:mod:`corral.runtime.executor`) places loaded models; by default each gets a runner
    process of its own; ``executor_name`` (``--executor``, else ``CORRAL_EXECUTOR``) names a registered one
    (``in-process`` keeps them in the server's process; plugins add others).

    ``guards`` (:class:`corral.server.guards.GuardOptions`) sets the Host, Origin, limit and log rules;
    its keys default to ``api_key``, ``CORRAL_API_KEYS`` and the keys file. Listening beyond loopback
    without a key is refused unless ``insecure_no_auth``.
    """
    import attrs

    from corral.home import corral_home
    from corral.keys import KeyRing
    from corral.library import open_library
    from corral.server.app import create_app
    from corral.server.guards import GuardOptions, check_exposure
    from corral.server.request_log import LOG_DIR

    running = read_state(home)
    if running is not None and running.pid != os.getpid():
        raise Conflict(
            f"a Corral server already runs for this library (pid {running.pid}, {running.url}); "
            f"stop it first or use another CORRAL_HOME"
        )
    data = home or corral_home()
    guards = guards or GuardOptions()
    keys = guards.keys or KeyRing.for_server(data, api_key)
    check_exposure(host, keys, insecure_no_auth)
    guards = attrs.evolve(guards, bound_host=host, keys=keys, allowed_paths=guards.allowed_paths or (data,),
                          log_dir=guards.log_dir or data / LOG_DIR)
    sock = bind(host, port)
    address = sock.getsockname()
    library = open_library(home)
    if executor is None:
        from corral.runtime.executor import executor_from_env

        executor = executor_from_env(host=library.host, log_dir=data / LOG_DIR / "runners", name=executor_name)
    runtime = Runtime(library, keep_alive=keep_alive, max_waiting=max_waiting, executor=executor)
    watchdog = Watchdog(runtime, threshold=memory_threshold)
    app = create_app(runtime, watchdog, guards=guards)
    app.state.service.address = (host, address[1])
    state = ServerState(pid=os.getpid(), host=host, port=address[1], version=__version__)

    def started() -> None:
        write_state(state, home)
        shown = f"[{host}]" if ":" in host else host
        announce(f"Corral {__version__} listening on {shown}:{address[1]} ({keys.describe()}); "
                 f"{state.url} from this machine; Ctrl-C stops it.")
        if not keys.enabled and not is_loopback(host):
            announce(f"Warning: {host} may be reachable from other machines and no API key is set "
                     f"(--insecure-no-auth).")

    server = _uvicorn_server(app, log_level, on_start=started, on_stop=lambda: clear_state(state.pid, home),
                             limits=guards.limits)
    app.state.stop = lambda: setattr(server, "should_exit", True)  # POST /corral/stop (`corral stop`)
    _log_to_stderr(log_level)
    try:
        server.run(sockets=[sock])
    finally:
        clear_state(state.pid, home)
        library.store.close()


class ServerThread:
    """The HTTP server on a background thread of this process, around an existing runtime.

    ``with ServerThread(runtime) as server: httpx.get(server.url + "/v1/models")``. Leaving the block
    stops the server and unloads every model. ``state=True`` also writes the state file, so CLI commands
    of this library use this server. ``guards`` (:class:`corral.server.guards.GuardOptions`) sets the
    Host, Origin, key, limit and log rules; by default ``api_key`` is the only key and nothing is logged.
    """

    def __init__(
        self,
        runtime: Runtime,
        *,
        host: str = DEFAULT_HOST,
        port: int = 0,
        api_key: str | None = None,
        watchdog: Watchdog | None = None,
        state: bool = False,
        log_level: str = "warning",
        guards: Any = None,
        insecure_no_auth: bool = False,
    ) -> None:
        import attrs

        from corral.keys import KeyRing
        from corral.server.app import create_app
        from corral.server.guards import GuardOptions, check_exposure

        guards = guards or GuardOptions()
        home = Path(runtime.library.store.path).parent
        guards = attrs.evolve(guards, bound_host=host, keys=guards.keys or KeyRing.single(api_key),
                              allowed_paths=guards.allowed_paths or (home,))
        check_exposure(host, guards.keys, insecure_no_auth)
        self.runtime = runtime
        self.guards = guards
        self.app = create_app(runtime, watchdog, guards=guards)
        self._sock = bind(host, port)
        self.host, self.port = host, self._sock.getsockname()[1]
        self.app.state.service.address = (host, self.port)
        self.state = ServerState(pid=os.getpid(), host=host, port=self.port, version=__version__)
        self._home = home
        on_start = (lambda: write_state(self.state, self._home)) if state else None
        on_stop = (lambda: clear_state(self.state.pid, self._home)) if state else None
        self._server = _uvicorn_server(self.app, log_level, on_start=on_start, on_stop=on_stop, limits=guards.limits)
        self.app.state.stop = lambda: setattr(self._server, "should_exit", True)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]},
                                        name="corral-server", daemon=True)

    @property
    def url(self) -> str:
        return self.state.url

    @property
    def service(self) -> Any:
        return self.app.state.service

    def start(self, timeout: float = 30.0) -> ServerThread:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise CorralError(f"the server on port {self.port} did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=60)
        self._sock.close()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
