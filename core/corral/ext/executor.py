"""What a plugin registers to provide an executor (where loaded models live), and the placement vocabulary
the ``place_model`` hook speaks.

An executor is registered as an :class:`ExecutorSpec` (``register_executors``): a name and a factory,
given as a callable or as ``"module:attribute"`` so that registering it imports nothing heavy (a cluster
executor's client library is imported only when ``corral serve --executor NAME`` builds it). The factory
is called with keyword arguments ``host`` (the plugin host) and ``log_dir`` (a folder for logs) and
returns an object with the :class:`corral.runtime.executor.Executor` interface.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Mapping, Sequence

import attrs

from corral.errors import InvalidSetting

#: The per-model setting that pins a model to one node (a placement's ``node``).
NODE_SETTING = "node"


@attrs.frozen
class ExecutorSpec:
    """A registered executor: ``corral serve --executor NAME`` (or ``CORRAL_EXECUTOR``) builds it."""

    name: str
    #: A callable ``(**options) -> Executor``, or ``"module:attribute"`` naming one (imported on use).
    factory: Callable[..., Any] | str
    #: One line for ``corral serve --help`` and the docs.
    summary: str = ""

    def resolve(self) -> Callable[..., Any]:
        """The factory itself (importing its module when it was given by name)."""
        if not isinstance(self.factory, str):
            return self.factory
        module, _, attribute = self.factory.partition(":")
        found: Any = importlib.import_module(module)
        for part in attribute.split("."):
            found = getattr(found, part)
        return found

    def create(self, **options: Any) -> Any:
        """A new executor, built with ``options`` (``host``, ``log_dir``)."""
        return self.resolve()(**options)


@attrs.frozen
class Placement:
    """Where a load may go: a node and what the executor knows of it (free memory, drivers, files)."""

    node: str
    free_ram: int = 0
    free_vram: int = 0
    #: Anything else the executor reports about the node (its GPUs, usable drivers, held files...).
    facts: Mapping[str, Any] = attrs.field(factory=dict)
    #: Ids of idle models on the node that the runtime unloads before this load (least recently used
    #: first), to make room the node would not have otherwise.
    evict: tuple[str, ...] = ()


@attrs.frozen
class Resident:
    """A model loaded now, as a placement sees it: where it runs, what its load took, when it last
    served, and whether a request runs or waits for it (``idle`` False)."""

    model_id: str
    name: str
    node: str | None
    group: str
    ram: int = 0
    vram: int = 0
    last_used: float = 0.0
    idle: bool = False


def room_by_eviction(residents: Sequence[Resident], node: str, fits: Callable[[int, int], bool]) -> tuple[str, ...] | None:
    """The idle models on ``node`` to unload, least recently used first, until ``fits(ram, vram)`` (the
    memory they give back) holds: () when nothing needs to go, None when unloading every idle one there
    is not enough."""
    back_ram = back_vram = 0
    chosen: list[str] = []
    idle = sorted((r for r in residents if r.node == node and r.idle), key=lambda r: r.last_used)
    for resident in [None, *idle]:
        if resident is not None:
            chosen.append(resident.model_id)
            back_ram, back_vram = back_ram + resident.ram, back_vram + resident.vram
        if fits(back_ram, back_vram):
            return tuple(chosen)
    return None


def pinned(settings: Mapping[str, Any], candidates: Sequence[Placement]) -> Placement | None:
    """The candidate the ``node`` setting names (None: no such setting). A node that is not among the
    candidates raises :class:`corral.errors.InvalidSetting` with the names that are."""
    wanted = settings.get(NODE_SETTING)
    if not wanted:
        return None
    for candidate in candidates:
        if candidate.node == wanted:
            return candidate
    names = ", ".join(c.node for c in candidates) or "none"
    raise InvalidSetting(f"node {wanted!r} (the model's node setting) is not available; nodes that can take it: {names}")


def choose_placement(host: Any, model: Any, settings: Mapping[str, Any],
                     candidates: Sequence[Placement]) -> Placement | None:
    """The placement a model's ``node`` setting or a ``place_model`` plugin picks among ``candidates``;
    None leaves the choice to the executor's own rule."""
    chosen = pinned(settings, candidates)
    if chosen is not None:
        return chosen
    return host.first_result("place_model", model=model, settings=dict(settings), candidates=list(candidates))
