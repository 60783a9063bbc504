"""A fake model hub for tests: a local HTTP server (127.0.0.1, random port) that the real
``huggingface_hub`` and ``modelscope`` clients talk to, serving the small repositories of
:mod:`fakehub.repos`. Point the clients at it with :meth:`FakeHub.env` (HF_ENDPOINT, MODELSCOPE_ENDPOINT
and MODELSCOPE_DOMAIN, set before the client is imported: run them in a subprocess with that env).

    with FakeHub.start(tmp_path / "hub") as hub:
        hub.cut(CHAT, Q8, at=1_000_000)          # drop the connection there
        hub.stall(CHAT, Q8, at=500_000)          # stop sending there until released
        hub.throttle(CHAT, Q8, 500_000)          # at most 500 kB a second
        hub.bad_sha(CHAT, Q8)                    # list a wrong sha256
        hub.bytes_served(CHAT, Q8)               # body bytes sent for that file
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from fakehub.repos import (  # noqa: F401 - re-exported for tests
    CHAT,
    EMBED,
    F16_PARTS,
    HOSTILE,
    HUGE,
    LORA,
    MMPROJ,
    PRIVATE,
    Q8,
    TOKEN,
    Repo,
    build_repos,
)
from fakehub.server import FakeHubServer, Stall, State

__all__ = ["FakeHub", "build_repos", "CHAT", "EMBED", "LORA", "PRIVATE", "HOSTILE", "HUGE", "Q8", "F16_PARTS",
           "MMPROJ", "TOKEN"]  # fmt: skip


class FakeHub:
    """The running server, its switches and its counters."""

    def __init__(self, repos: dict[str, Repo]) -> None:
        self.state = State(repos)
        self.server = FakeHubServer(self.state)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True, name="fakehub")
        self._thread.start()

    @classmethod
    @contextmanager
    def start(cls, root: Path, repos: dict[str, Repo] | None = None) -> Iterator["FakeHub"]:
        hub = cls(repos if repos is not None else build_repos(root))
        try:
            yield hub
        finally:
            hub.stop()

    def stop(self) -> None:
        for stall in list(self.state.stalls.values()):
            stall.release.set()
        self.server.shutdown()
        self.server.server_close()

    def repo(self, repo_id: str) -> Repo:
        return self.state.repos[repo_id]

    def entry(self, repo_id: str, path: str, revision: str = "main"):
        repo = self.repo(repo_id)
        return repo.commits[repo.refs[revision]][path]

    # --- switches ------------------------------------------------------------------------------------

    def reset(self) -> None:
        """No switches, no counts (the repositories stay)."""
        for stall in list(self.state.stalls.values()):
            stall.release.set()
        self.state.reset()

    def cut(self, repo: str, path: str, at: int, times: int | None = None) -> None:
        """Close the connection after byte ``at`` of ``path`` (``times`` times, or until :meth:`reset`)."""
        with self.state.lock:
            self.state.cuts[(repo, path)] = [at, times]

    def uncut(self, repo: str, path: str) -> None:
        with self.state.lock:
            self.state.cuts.pop((repo, path), None)

    def stall(self, repo: str, path: str, at: int) -> Stall:
        """Stop sending ``path`` after byte ``at`` until the returned stall's ``release`` is set."""
        stall = Stall(at)
        with self.state.lock:
            self.state.stalls[(repo, path)] = stall
        return stall

    def unstall(self, repo: str, path: str) -> None:
        with self.state.lock:
            stall = self.state.stalls.pop((repo, path), None)
        if stall is not None:
            stall.release.set()

    def throttle(self, repo: str, path: str, rate: int | None) -> None:
        """Send ``path`` at most ``rate`` bytes a second (None: at full speed again)."""
        with self.state.lock:
            if rate:
                self.state.throttles[(repo, path)] = rate
            else:
                self.state.throttles.pop((repo, path), None)

    def bad_sha(self, repo: str, path: str) -> None:
        """List a sha256 for ``path`` that its bytes do not have."""
        with self.state.lock:
            self.state.bad_sha.add((repo, path))

    # --- counters ------------------------------------------------------------------------------------

    def bytes_served(self, repo: str | None = None, path: str | None = None) -> int:
        return self.state.bytes_served(repo, path)

    def bodies(self, repo: str | None = None, path: str | None = None) -> list[tuple[int, int]]:
        """``(start, sent)`` of each body sent for the file, in order."""
        with self.state.lock:
            return [(s.start, s.sent) for s in self.state.served if repo in (None, s.repo) and path in (None, s.path)]

    # --- clients -------------------------------------------------------------------------------------

    def env(self, base: dict[str, str] | None = None, *, home: Path) -> dict[str, str]:
        """An environment that points both clients and Corral at this hub, with caches under ``home``."""
        env = dict(base or {})
        for key in ("HF_TOKEN", "HF_HUB_OFFLINE", "HF_HUB_CACHE", "MODELSCOPE_API_TOKEN", "CORRAL_LOAD_PLUGINS"):
            env.pop(key, None)
        env.update(
            HF_ENDPOINT=self.url,
            HF_HOME=str(home / "hf"),
            HF_HUB_DISABLE_TELEMETRY="1",
            HF_HUB_DISABLE_PROGRESS_BARS="1",
            MODELSCOPE_ENDPOINT=self.url,
            MODELSCOPE_DOMAIN=self.url,
            MODELSCOPE_CACHE=str(home / "modelscope"),
            MODELSCOPE_HOME=str(home / "modelscope-home"),
            CORRAL_HOME=str(home / "corral"),
        )
        return env
