"""The node agent: a small actor on each worker node that tells the head what the node can take.

``corral worker`` starts it (a detached actor named ``corral-agent:NAME`` pinned to its node, so it
lives as long as the node). It reports the node's GPUs (through the node's own GPU vendor plugins), its
free memory, which of the drivers the head asks about pass their environment check there, and which of
a load's files the node holds at the path the head's record names, checked by size and sha256. It never
opens a library database: everything it checks comes in the head's request.
"""

from __future__ import annotations

import importlib
import sys
import traceback
from pathlib import Path
from typing import Any, Sequence

import ray

from corral_ray.nodes import NAMESPACE, SHARE, agent_name, local_versions, node_resource

#: Seconds the worker waits for its new agent to answer.
START_TIMEOUT = 60.0


def _under(path: Path, roots: Sequence[Path]) -> bool:
    return not roots or any(path == root or root in path.parents for root in roots)


class NodeAgent:
    """What one node reports to the head (see the module docstring)."""

    def __init__(self, name: str, roots: Sequence[str] = (), memory_limit: int | None = None) -> None:
        self.name = name
        self.roots = [Path(r).resolve() for r in roots]
        self.memory_limit = memory_limit
        self._hashes: dict[tuple[str, int, int], str] = {}
        self._drivers: dict[str, dict[str, Any]] = {}
        self._versions = local_versions()

    def ping(self) -> str:
        return self.name

    def versions(self) -> dict[str, Any]:
        return self._versions

    def report(self, files: Sequence[dict], drivers: Sequence[str], sys_path: Sequence[str] = ()) -> dict[str, Any]:
        """The node now: free memory, GPUs, the asked ``drivers`` (``module:Class``) that work here, and
        for each of ``files`` (``{"path", "size", "sha256"}``) whether this node holds it."""
        import psutil

        from corral.api import get_host, read_gpus, to_data

        for entry in sys_path:  # where the head found the drivers' modules (the same layout on every node)
            if isinstance(entry, str) and entry not in sys.path:
                sys.path.append(entry)
        gpus = read_gpus(get_host())
        with_memory = [g for g in gpus if g.vram_total]
        free_vram = sum(g.vram_total - (g.vram_used or 0) for g in with_memory) if with_memory else None
        return {
            "node": self.name,
            "free_ram": int(psutil.virtual_memory().available),
            "memory_limit": self.memory_limit,
            "free_vram": free_vram,
            "gpus": [to_data(g) for g in gpus],
            "drivers": {path: self._driver(path) for path in drivers},
            "files": {str(f["path"]): self._holds(f) for f in files},
            "versions": self._versions,
        }

    def _driver(self, path: str) -> dict[str, Any]:
        known = self._drivers.get(path)
        if known is not None:
            return known
        from corral.api import to_data

        try:
            module, _, qualname = path.partition(":")
            target: Any = importlib.import_module(module)
            for part in qualname.split("."):
                target = getattr(target, part)
            status = to_data(target.check())
            found = {"available": bool(status.get("available")), "problem": status.get("problem"),
                     "install": status.get("install")}
        except Exception as exc:  # noqa: BLE001 - a driver that is not installed here
            found = {"available": False, "problem": f"{type(exc).__name__}: {exc}", "install": None}
        self._drivers[path] = found
        return found

    def _holds(self, wanted: dict) -> bool:
        from corral.api import sha256_file

        path = Path(str(wanted["path"]))
        if not _under(path.resolve() if path.exists() else path, self.roots):
            return False
        try:
            stat = path.stat()
        except OSError:
            return False
        if path.is_dir():
            return True
        size, sha = wanted.get("size"), wanted.get("sha256")
        if size and stat.st_size != int(size):
            return False
        if not sha:
            return True
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        digest = self._hashes.get(key)
        if digest is None:
            try:
                digest = sha256_file(path)
            except OSError:
                traceback.print_exc()
                return False
            self._hashes[key] = digest
        return digest == sha


#: The actor class (kept apart so the class above stays plain Python to read and test).
RemoteAgent = ray.remote(num_cpus=0)(NodeAgent)


def start_agent(name: str, *, roots: Sequence[str] = (), memory_limit: int | None = None,
                timeout: float = START_TIMEOUT) -> Any:
    """Start node ``name``'s agent on that node (or find the one running); its handle once it answers."""
    agent = RemoteAgent.options(
        name=agent_name(name), namespace=NAMESPACE, lifetime="detached", get_if_exists=True,
        resources={node_resource(name): SHARE},
    ).remote(name, [str(r) for r in roots], memory_limit)
    ray.get(agent.ping.remote(), timeout=timeout)
    return agent


def find_agent(name: str) -> Any | None:
    """Node ``name``'s agent, or None when it has none (yet)."""
    try:
        return ray.get_actor(agent_name(name), namespace=NAMESPACE)
    except ValueError:
        return None
