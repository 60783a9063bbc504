"""The server state file (``CORRAL_HOME/server.json``): how CLI commands find a running server.

Written once the server listens, removed when it stops. A file left by a process that died is ignored.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import attrs

from corral.home import corral_home

STATE_FILE = "server.json"
LOG_FILE = "server.log"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8420


@attrs.frozen
class ServerState:
    """A running server: its process, where it listens, since when."""

    pid: int
    host: str
    port: int
    started: float = attrs.field(factory=time.time)
    version: str = ""

    @property
    def url(self) -> str:
        """Base URL to reach it from this machine (a wildcard bind is reached over loopback)."""
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(self.host, self.host)
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @property
    def address(self) -> str:
        """Where it listens, as ``host:port``."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def describe(self) -> dict:
        """What ``corral ps --json`` and ``corral serve --status --json`` say about the server."""
        return {"pid": self.pid, "address": self.address, "url": self.url, "started": self.started,
                "version": self.version}


def state_path(home: Path | None = None) -> Path:
    return (home or corral_home()) / STATE_FILE


def log_path(home: Path | None = None) -> Path:
    return (home or corral_home()) / LOG_FILE


def write_state(state: ServerState, home: Path | None = None) -> Path:
    """Write the state file atomically (readers never see half a file)."""
    path = state_path(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(attrs.asdict(state)))
    os.replace(tmp, path)
    return path


def read_state(home: Path | None = None) -> ServerState | None:
    """The recorded server, or None when there is no file, it is unreadable, or its process is gone."""
    try:
        data = json.loads(state_path(home).read_text())
        state = ServerState(
            pid=int(data["pid"]),
            host=str(data["host"]),
            port=int(data["port"]),
            started=float(data.get("started", 0)),
            version=str(data.get("version", "")),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    import psutil

    return state if psutil.pid_exists(state.pid) else None


def clear_state(pid: int, home: Path | None = None) -> None:
    """Remove the state file if it still names process ``pid``."""
    path = state_path(home)
    try:
        if json.loads(path.read_text()).get("pid") == pid:
            path.unlink()
    except (OSError, ValueError, AttributeError):
        pass
