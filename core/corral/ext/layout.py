"""Store layouts: how another tool keeps models on disk (the Hugging Face cache, Ollama, LM Studio, or
any a plugin adds), so ``corral scan --layout NAME`` can adopt them in place.

A layout is a :class:`StoreLayout` subclass registered through ``register_store_layouts``; the core's
three are registered by its built-in plugin the same way. The adoption itself — detection, names,
provenance, dedupe by size + SHA-256, vanished files — is the core's and shared by every layout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Iterator, Mapping

import attrs

from corral.records import ComponentKind, Provenance


@attrs.frozen
class Found:
    """A model that a store layout points at, with what the store knows about it.

    ``path`` is what the record keeps (a Hugging Face snapshot's link, not the blob it points to);
    ``components`` are parts the store names (Ollama's projector layer); ``settings`` are load settings
    the store keeps for it (Ollama's parameters layer, already mapped to Corral's names and types);
    ``loras`` are adapter files it applies (Ollama's adapter layers); ``sha256`` is the hash a
    content-addressed store promises; ``problem`` marks a broken entry (a manifest naming a missing blob).
    """

    path: Path
    name: str | None = None
    provenance: Provenance | None = None
    components: tuple[tuple[ComponentKind, Path], ...] = ()
    settings: Mapping[str, Any] = attrs.field(factory=dict)
    loras: tuple[Path, ...] = ()
    sha256: str | None = None
    problem: str | None = None


class StoreLayout:
    """One tool's model store. Subclasses set the class attributes and implement both methods; they are
    never instantiated. Reading the store must only read: adoption records files in place."""

    #: What ``corral scan --layout`` takes (lowercase, dashes).
    name: ClassVar[str] = ""
    #: In words, for messages: "LM Studio models".
    label: ClassVar[str] = ""
    #: The ``corral scan`` option of its own, for the core's layouts (``--ollama``); others use --layout.
    option: ClassVar[str] = ""

    @classmethod
    def default_roots(cls) -> list[Path]:
        """Where the tool keeps its models, most likely first (the first that exists is scanned)."""
        raise NotImplementedError

    @classmethod
    def find(cls, root: Path) -> Iterator[Found]:
        """Every model the store under ``root`` holds. A broken entry is a :class:`Found` with
        ``problem`` set, not an exception, so one bad entry never stops a scan."""
        raise NotImplementedError
