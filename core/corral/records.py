"""Records that cross hook boundaries and land in the library store.

All records are frozen attrs classes. :data:`corral.convert.converter` turns every one of them into
JSON-ready data (``--json`` output, database columns) and back.
"""

from __future__ import annotations

import enum
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

import attrs
from attrs import field, frozen


class Category(str, enum.Enum):
    """What a model is for; one base model per category can be loaded at a time."""

    CHAT = "chat"
    MULTIMODAL = "multimodal"
    TEXT_GENERATION = "text-generation"
    EMBEDDING = "embedding"
    RERANK = "rerank"
    IMAGE = "image"
    TTS = "tts"

    def __str__(self) -> str:
        return self.value


class Format(str, enum.Enum):
    """How a model's weights are stored on disk."""

    GGUF = "gguf"
    SAFETENSORS = "safetensors"
    PYTORCH_PICKLE = "pytorch-pickle"
    ONNX = "onnx"
    DIFFUSERS_DIR = "diffusers-dir"
    HF_DIR = "hf-dir"
    KOKORO = "kokoro"

    def __str__(self) -> str:
        return self.value


class ComponentKind(str, enum.Enum):
    """Parts attached to a model: a multimodal projector, or the pieces of an image pipeline."""

    MMPROJ = "mmproj"
    VAE = "vae"
    CLIP_L = "clip-l"
    CLIP_G = "clip-g"
    T5XXL = "t5xxl"

    def __str__(self) -> str:
        return self.value


class Kind(str, enum.Enum):
    """What a detected file is: a model of its own, a component of one, or a LoRA adapter."""

    MODEL = "model"
    COMPONENT = "component"
    LORA = "lora"

    def __str__(self) -> str:
        return self.value


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


@frozen
class Facts:
    """What detection learned from a file's headers. Every field is optional; ``extra`` holds the rest."""

    architecture: str | None = None
    parameters: int | None = None
    context_length: int | None = None
    quantization: str | None = None
    embedding_dims: int | None = None
    layers: int | None = None
    heads: int | None = None
    kv_heads: int | None = None
    hidden_size: int | None = None
    vocab_size: int | None = None
    dtype: str | None = None
    has_chat_template: bool | None = None
    lora_rank: int | None = None
    lora_alpha: float | None = None
    base_model: str | None = None
    pipeline: str | None = None
    voices: tuple[str, ...] = ()
    extra: Mapping[str, Any] = field(factory=dict)

    def nonempty(self) -> dict[str, Any]:
        """The fields that carry a value, for display."""
        out = {}
        for a in attrs.fields(Facts):
            value = getattr(self, a.name)
            if value not in (None, (), {}):
                out[a.name] = value
        return out


@frozen
class Detection:
    """The answer of format detection for one path.

    ``confidence`` is 0..1; ``reasons`` say, in words, what content (or name hint) led to the verdict.
    ``paths`` are every file the model needs (the primary file first); ``size`` is their total in bytes.
    ``unsafe`` names why loading could run code (a pickle importing non-allow-listed globals).
    """

    path: Path
    kind: Kind
    format: Format
    category: Category | None = None
    component: ComponentKind | None = None
    confidence: float = 1.0
    reasons: tuple[str, ...] = ()
    facts: Facts = field(factory=Facts)
    paths: tuple[Path, ...] = ()
    size: int = 0
    unsafe: str | None = None
    #: Other things found beside the main file (an mmproj next to a GGUF, for instance).
    attachments: tuple["Detection", ...] = ()


@frozen
class Provenance:
    """Where a model came from."""

    hub: str | None = None
    repo: str | None = None
    revision: str | None = None
    files: tuple[str, ...] = ()
    url: str | None = None


@frozen
class Component:
    """A part attached to a model (mmproj; vae, clip-l, clip-g, t5xxl)."""

    kind: ComponentKind
    path: Path
    size: int = 0
    sha256: str | None = None
    facts: Facts = field(factory=Facts)


@frozen
class Model:
    """A model in the library."""

    id: str
    name: str
    category: Category
    format: Format
    path: Path
    description: str = ""
    paths: tuple[Path, ...] = ()
    size: int = 0
    sha256: str | None = None
    facts: Facts = field(factory=Facts)
    provenance: Provenance = field(factory=Provenance)
    tags: tuple[str, ...] = ()
    settings: Mapping[str, Any] = field(factory=dict)
    components: tuple[Component, ...] = ()
    unsafe: str | None = None
    created: datetime = field(factory=utcnow)
    updated: datetime = field(factory=utcnow)

    def component(self, kind: ComponentKind) -> Component | None:
        return next((c for c in self.components if c.kind == kind), None)


@frozen
class Lora:
    """A LoRA adapter bound to a base model. ``weight`` is its default strength (1.0 = full)."""

    id: str
    name: str
    base_id: str
    format: Format
    path: Path
    size: int = 0
    weight: float = 1.0
    facts: Facts = field(factory=Facts)
    provenance: Provenance = field(factory=Provenance)
    created: datetime = field(factory=utcnow)


@frozen
class LoraRequest:
    """A LoRA asked for in a load, with the weight to apply."""

    lora: Lora
    weight: float = 1.0


@frozen
class ChatResult:
    """A finished (non-streamed) chat or completion answer."""

    text: str
    finish_reason: str = "stop"
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


@frozen
class Measurement:
    """What a load really took, recorded after every load (``corral fit`` shows it beside the estimate)."""

    model_id: str
    settings: Mapping[str, Any]
    ram: int
    vram: int = 0
    measured: datetime = field(factory=utcnow)


@frozen
class SettingSpec:
    """A load setting a driver understands (``corral settings MODEL --set name=value``)."""

    name: str
    type: type
    help: str = ""
    default: Any = None
    choices: tuple[Any, ...] = ()
    minimum: float | None = None
    maximum: float | None = None


@frozen
class BackendStatus:
    """What an environment check found for one backend."""

    name: str
    available: bool
    version: str | None = None
    acceleration: tuple[str, ...] = ()
    problem: str | None = None
    install: str | None = None


@frozen
class GpuInfo:
    """One GPU as a vendor plugin sees it. Live fields are None where the vendor cannot read them."""

    vendor: str
    index: int
    name: str
    vram_total: int | None = None
    vram_used: int | None = None
    temperature: float | None = None
    utilization: float | None = None


@frozen
class RemoteFile:
    """A file in a hub repository."""

    name: str
    size: int | None = None
    sha256: str | None = None


@frozen
class RepoSummary:
    """A search hit on a hub."""

    repo: str
    source: str
    downloads: int | None = None
    likes: int | None = None
    size: int | None = None
    tags: tuple[str, ...] = ()
    category: Category | None = None


@frozen
class PluginInfo:
    """A plugin as ``corral plugins`` shows it."""

    name: str
    distribution: str | None = None
    version: str | None = None
    hooks: tuple[str, ...] = ()
    drivers: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    gpu_vendors: tuple[str, ...] = ()
    exporters: tuple[str, ...] = ()
    error: str | None = None
    builtin: bool = False
