"""The names a Corral cluster shares (Ray namespace, resources, actor names) and the version check
between a node and the head. Imports no Ray: the worker command and the executor both build on it."""

from __future__ import annotations

import platform
import re
from importlib import metadata
from typing import Any, Mapping

#: The Ray namespace of Corral's named actors (the node agents).
NAMESPACE = "corral"
#: The resource every Corral worker node declares (1 per node); nodes without it are not Corral's.
RESOURCE = "corral"
#: A per-node resource ``corral-node:NAME`` pins an actor to the node called NAME.
NODE_PREFIX = "corral-node:"
#: The head writes its versions under this key of Ray's key-value store; a joining worker compares.
VERSIONS_KEY = b"corral:head-versions"
#: How much of a node's own resource each actor takes: any number of actors fit on a node.
SHARE = 0.001

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


def node_resource(name: str) -> str:
    """The Ray resource that only node ``name`` has."""
    return NODE_PREFIX + name


def node_resources(name: str) -> dict[str, float]:
    """The custom resources ``corral worker --name NAME`` starts its Ray node with."""
    return {RESOURCE: 1.0, node_resource(name): 1.0}


def agent_name(name: str) -> str:
    """The name of node ``name``'s agent actor (in :data:`NAMESPACE`)."""
    return f"corral-agent:{name}"


def node_name(resources: Mapping[str, Any]) -> str | None:
    """The Corral name of a Ray node, read from its resources (None: not a Corral worker)."""
    if RESOURCE not in resources:
        return None
    return next((key[len(NODE_PREFIX):] for key in resources if key.startswith(NODE_PREFIX)), None)


def check_name(name: str) -> str:
    """``name`` when it can name a node (letters, digits, ``.``, ``_``, ``-``); ValueError otherwise."""
    if not _NAME.match(name):
        raise ValueError(f"{name!r} cannot name a node: use letters, digits, '.', '_' and '-' (up to 63)")
    return name


def local_versions() -> dict[str, Any]:
    """What must match across a cluster: Ray, Python (major.minor), Corral and its plugins' versions."""
    import ray

    plugins: dict[str, str] = {}
    for ep in metadata.entry_points(group="corral"):
        dist = getattr(ep, "dist", None)
        if dist is not None:
            plugins[dist.name] = dist.version
    try:
        corral_version = metadata.version("corral")
    except metadata.PackageNotFoundError:
        corral_version = "unknown"
    return {"ray": ray.__version__, "python": ".".join(platform.python_version_tuple()[:2]),
            "corral": corral_version, "plugins": plugins}


def version_problem(head: Mapping[str, Any], node: Mapping[str, Any]) -> str | None:
    """What differs between the head's versions and a node's, in one line (None: they match). Plugins
    installed on one side only are not a mismatch: a node without a driver is not offered its models."""
    differs = []
    for key, label in (("ray", "Ray"), ("python", "Python"), ("corral", "corral")):
        if head.get(key) != node.get(key):
            differs.append((label, node.get(key), head.get(key)))
    theirs, ours = head.get("plugins") or {}, node.get("plugins") or {}
    for dist in sorted(set(theirs) & set(ours)):
        if theirs[dist] != ours[dist]:
            differs.append((dist, ours[dist], theirs[dist]))
    if not differs:
        return None
    here = ", ".join(f"{label} {mine}" for label, mine, _ in differs)
    there = ", ".join(f"{label} {head_has}" for label, _, head_has in differs)
    return f"this node runs {here} but the head runs {there}: install the head's versions on this node"
