"""Environment checks without importing the backend: is each required module installed, at which version."""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
from typing import Mapping, Sequence

from corral.records import BackendStatus


def backend_status(name: str, distribution: str, requires: Sequence[str]) -> BackendStatus:
    """Check that each import name in ``requires`` is installed, without importing it."""
    versions = []
    for module in requires:
        top = module.split(".")[0]
        try:
            found = importlib.util.find_spec(top) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            return BackendStatus(
                name=name,
                available=False,
                problem=f"Python module {top!r} is not installed",
                install=f"pip install {distribution}",
            )
        versions.append(_module_version(top))
    version = next((v for v in versions if v), None)
    return BackendStatus(name=name, available=True, version=version)


@functools.lru_cache(maxsize=1)
def _packages_distributions() -> Mapping[str, list[str]]:
    # Walks every installed distribution's file list (seconds in a large environment): once per process.
    return importlib.metadata.packages_distributions()


def _module_version(module: str) -> str | None:
    for dist in _packages_distributions().get(module, [module]):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None
