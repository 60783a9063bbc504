"""Load one plugin the way ``corral --help`` does, in a fresh process, and report what it imported.

Run ``python -m corral.testing.startup_probe NAME``: imports the entry point ``NAME`` of the ``corral``
group, builds the plugin host with only that plugin and then the CLI (so ``register_commands`` runs
too), and prints one JSON document: ``{"found": bool, "failure": str | null, "heavy": [module, ...]}``.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import sys

#: Backend libraries that registering a plugin or building the CLI must never import.
HEAVY_MODULES = (
    "torch",
    "diffusers",
    "llama_cpp",
    "sentence_transformers",
    "kokoro",
    "modelscope",
    "transformers",
)


def probe(name: str) -> dict:
    """Import plugin ``name``, register it, build the CLI; say which heavy modules got imported."""
    entry_points = [ep for ep in importlib.metadata.entry_points(group="corral") if ep.name == name]
    if not entry_points:
        return {"found": False, "failure": None, "heavy": []}
    failure = None
    try:
        entry_points[0].load()
    except Exception as exc:  # reported, not raised: the caller tells the plugin author
        failure = f"importing {entry_points[0].value} failed: {type(exc).__name__}: {exc}"
    if failure is None:
        os.environ["CORRAL_LOAD_PLUGINS"] = name
        from corral.cli import build_cli
        from corral.plugins import build_host, set_host

        host = build_host()
        set_host(host)
        build_cli()
        if name in host.failures:
            failure = host.failures[name].error
    return {"found": True, "failure": failure, "heavy": [m for m in HEAVY_MODULES if m in sys.modules]}


if __name__ == "__main__":
    print(json.dumps(probe(sys.argv[1])))
