"""Exporters: things that write new model files (``corral create``, conversions)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Mapping

from corral.ext.backend import backend_status
from corral.ext.driver import Progress
from corral.records import BackendStatus


class Exporter:
    """Writes new model files (a fresh model from a config, a conversion, ...)."""

    name: ClassVar[str] = ""
    distribution: ClassVar[str] = ""
    requires: ClassVar[tuple[str, ...]] = ()
    description: ClassVar[str] = ""

    @classmethod
    def check(cls) -> BackendStatus:
        return backend_status(cls.name, cls.distribution, cls.requires)

    def export(self, out: Path, options: Mapping[str, Any], progress: Progress | None = None) -> Path:
        raise NotImplementedError
