"""Records that cross hook boundaries and land in the library store.

All records are frozen attrs classes. :data:`corral.convert.converter` turns every one of them into
JSON-ready data (``--json`` output, database columns) and back.
"""

from __future__ import annotations

import enum
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ClassVar, Mapping

import attrs
from attrs import field, frozen


class _OpenNames(type):
    """Iterating the class lists its built-in names, as iterating the closed enums did."""

    def __iter__(cls):
        return iter(cls._builtin)


class _OpenName(str, metaclass=_OpenNames):
    """A name from an open set: built-in ones are class constants, plugins register more.

    It is a ``str`` (compares, hashes and serialises as its value) with the ``value`` an enum member has,
    so code written against the closed enums keeps working. Which names exist is the plugin host's
    business (``register_categories`` / ``register_formats``), not this type's.
    """

    __slots__ = ()
    _builtin: ClassVar[tuple] = ()

    @property
    def value(self) -> str:
        return str.__str__(self)

    def __str__(self) -> str:
        return str.__str__(self)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str.__repr__(self)})"

    def __format__(self, spec: str) -> str:
        return format(str.__str__(self), spec)


class Category(_OpenName):
    """What a model is for; one base model per category (or per exclusive group) is loaded at a time."""

    __slots__ = ()
    CHAT: ClassVar["Category"]
    MULTIMODAL: ClassVar["Category"]
    TEXT_GENERATION: ClassVar["Category"]
    EMBEDDING: ClassVar["Category"]
    RERANK: ClassVar["Category"]
    IMAGE: ClassVar["Category"]
    TTS: ClassVar["Category"]


class Format(_OpenName):
    """How a model's weights are stored on disk."""

    __slots__ = ()
    GGUF: ClassVar["Format"]
    SAFETENSORS: ClassVar["Format"]
    PYTORCH_PICKLE: ClassVar["Format"]
    ONNX: ClassVar["Format"]
    DIFFUSERS_DIR: ClassVar["Format"]
    HF_DIR: ClassVar["Format"]
    KOKORO: ClassVar["Format"]


for _name, _value in [("CHAT", "chat"), ("MULTIMODAL", "multimodal"), ("TEXT_GENERATION", "text-generation"),
                      ("EMBEDDING", "embedding"), ("RERANK", "rerank"), ("IMAGE", "image"), ("TTS", "tts")]:
    setattr(Category, _name, Category(_value))
    Category._builtin += (getattr(Category, _name),)
for _name, _value in [("GGUF", "gguf"), ("SAFETENSORS", "safetensors"), ("PYTORCH_PICKLE", "pytorch-pickle"),
                      ("ONNX", "onnx"), ("DIFFUSERS_DIR", "diffusers-dir"), ("HF_DIR", "hf-dir"),
                      ("KOKORO", "kokoro")]:
    setattr(Format, _name, Format(_value))
    Format._builtin += (getattr(Format, _name),)
del _name, _value


class ComponentKind(str, enum.Enum):
    """Parts attached to a model: a multimodal projector, a draft model for speculative decoding, or the
    pieces of an image pipeline."""

    MMPROJ = "mmproj"
    DRAFT = "draft"
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


#: Field metadata key: the field's name in JSON and in the database, where it differs from the attribute.
JSON_NAME = "json"


def byte_count(json_name: str, **kwargs: Any) -> Any:
    """A field that holds a number of bytes; in every JSON document (and database row) it is called
    ``json_name``, which ends in ``_bytes`` (``size`` -> ``size_bytes``)."""
    if not json_name.endswith("_bytes"):
        raise ValueError(f"a byte count's JSON name ends in _bytes, not {json_name!r}")
    return field(metadata={JSON_NAME: json_name}, **kwargs)


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
    size: int = byte_count("size_bytes", default=0)
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
    size: int = byte_count("size_bytes", default=0)
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
    size: int = byte_count("size_bytes", default=0)
    sha256: str | None = None
    facts: Facts = field(factory=Facts)
    provenance: Provenance = field(factory=Provenance)
    tags: tuple[str, ...] = ()
    settings: Mapping[str, Any] = field(factory=dict)
    components: tuple[Component, ...] = ()
    unsafe: str | None = None
    created: datetime = field(factory=utcnow)
    updated: datetime = field(factory=utcnow)
    #: The same file found at other places (same size and sha256): one record, every place remembered.
    copies: tuple[Path, ...] = ()
    #: A scan found the model's files gone (``corral ls`` and ``show`` check the disk again).
    missing: bool = False
    #: What detection concluded at import: its confidence (0..1) and its reasons, in words (records
    #: imported before these were kept have None and none).
    confidence: float | None = None
    reasons: tuple[str, ...] = ()

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
    size: int = byte_count("size_bytes", default=0)
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
    """A finished (non-streamed) chat or completion answer.

    ``text`` is the content shown to the user. Drivers that support them add the calls the model made
    (``tool_calls``: :class:`corral.tools.ToolCall`, with ``finish_reason`` ``tool_calls``), its thought
    (``reasoning``) and per-token log-probabilities (``logprobs``: :class:`corral.tools.TokenLogprob`).
    """

    text: str
    finish_reason: str = "stop"
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    tool_calls: tuple[Any, ...] = ()
    reasoning: str | None = None
    logprobs: tuple[Any, ...] | None = None


@frozen
class Measurement:
    """What a load really took, recorded after every load (``corral fit`` shows it beside the estimate)."""

    model_id: str
    settings: Mapping[str, Any]
    ram: int = byte_count("ram_bytes")
    vram: int = byte_count("vram_bytes", default=0)
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
    #: True where ``minimum`` itself is refused: the value must be above it (``top_p`` in (0, 1]).
    exclusive_minimum: bool = False

    def out_of_range(self, value: Any) -> str | None:
        """Why ``value`` is outside this setting's bounds ("must be above 0"), or None when inside."""
        if self.minimum is not None:
            if self.exclusive_minimum and value <= self.minimum:
                return f"must be above {self.minimum}"
            if value < self.minimum:
                return f"must be at least {self.minimum}"
        if self.maximum is not None and value > self.maximum:
            return f"must be at most {self.maximum}"
        return None


@frozen
class BackendStatus:
    """What an environment check found for one backend."""

    name: str
    available: bool
    version: str | None = None
    acceleration: tuple[str, ...] = ()
    problem: str | None = None
    install: str | None = None
    #: For a backend that works: how it could work better here (a build for this CPU, ...).
    advice: str | None = None


@frozen
class GpuInfo:
    """One GPU as a vendor plugin sees it. Live fields are None where the vendor cannot read them."""

    vendor: str
    index: int
    name: str
    vram_total: int | None = byte_count("vram_total_bytes", default=None)
    vram_used: int | None = byte_count("vram_used_bytes", default=None)
    temperature: float | None = None
    utilization: float | None = None


@frozen
class RemoteFile:
    """A file in a hub repository."""

    name: str
    size: int | None = byte_count("size_bytes", default=None)
    sha256: str | None = None
    #: The hub's git object id for the file (names a non-LFS file in a hub cache).
    blob_id: str | None = None


@frozen
class Snapshot:
    """A hub repository's file list at one revision, pinned to the commit it resolved to."""

    source: str
    repo: str
    revision: str | None = None
    commit: str | None = None
    files: tuple[RemoteFile, ...] = ()
    #: The repository's page on the hub.
    url: str | None = None


@frozen
class Transfer:
    """One file of a pull: where its bytes come from and where the verified file lands.

    The partial data sits beside ``target`` as ``target.part`` until it is verified. ``url`` None means
    the file is already at ``target`` and nothing is fetched. ``cached`` says ``target`` is named by its
    content in a hub cache, so a file already there is trusted after a size check. ``link`` is where the
    file shows under its repository name when that is not ``target`` (a hub cache's snapshot entry).
    """

    file: RemoteFile
    target: Path
    url: str | None = None
    headers: Mapping[str, str] = field(factory=dict)
    cached: bool = False
    link: Path | None = None


@frozen
class RepoSummary:
    """A search hit on a hub."""

    repo: str
    source: str
    downloads: int | None = None
    likes: int | None = None
    size: int | None = byte_count("size_bytes", default=None)
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
    categories: tuple[str, ...] = ()
    formats: tuple[str, ...] = ()
    store_layouts: tuple[str, ...] = ()
    error: str | None = None
    #: What went wrong without dropping the plugin (catalog entries it could not add).
    problems: tuple[str, ...] = ()
    builtin: bool = False


@frozen
class MemoryEstimate:
    """What loading a model with given settings is expected to take, in bytes.

    ``parts`` names where the bytes go (weights, kv_cache, compute, mmproj, lora, overhead; ``parts_bytes``
    in JSON); their sum is ``total_bytes``, split between system memory (``ram_bytes``) and GPU memory
    (``vram_bytes``).
    """

    ram_bytes: int
    vram_bytes: int
    total_bytes: int
    parts: Mapping[str, int] = byte_count("parts_bytes", factory=dict)
    #: The context length the estimate is for (None where the model has no context).
    n_ctx: int | None = None
    #: What the estimate assumed or could not know, in words.
    notes: tuple[str, ...] = ()


@frozen
class SystemStatus:
    """One reading of the machine: CPU, memory and GPUs, with warnings over the threshold."""

    cpu_percent: float
    memory_total: int = byte_count("memory_total_bytes")
    memory_used: int = byte_count("memory_used_bytes")
    memory_available: int = byte_count("memory_available_bytes")
    memory_percent: float
    gpus: tuple[GpuInfo, ...] = ()
    #: Memory use (percent) at and above which a warning is raised.
    warn_percent: float = 90.0
    warnings: tuple[str, ...] = ()


@frozen
class CatalogQuant:
    """One downloadable variant of a catalog model: a GGUF quantization or a weights dtype.

    ``pattern`` is a glob matched against the repository's file names (``*Q4_K_M.gguf``); ``bits`` is the
    average bits per weight used for estimates; ``size`` is the real download size when known.
    """

    name: str
    bits: float
    pattern: str = ""
    size: int | None = None


@frozen
class CatalogEntry:
    """A model the catalog knows: where to get it and the shape the memory estimate needs."""

    id: str
    family: str
    name: str
    category: Category
    format: Format
    repo: str
    parameters: int
    variant: str = ""
    source: str = "huggingface"
    context_length: int | None = None
    quantizations: tuple[CatalogQuant, ...] = ()
    description: str = ""
    license: str | None = None
    tags: tuple[str, ...] = ()
    architecture: str | None = None
    layers: int | None = None
    hidden_size: int | None = None
    ffn_size: int | None = None
    heads: int | None = None
    kv_heads: int | None = None
    head_dim: int | None = None
    vocab_size: int | None = None
    tied_embeddings: bool = True
    #: Sliding-window attention: the window, and every how many layers one is global (0: all windowed).
    sliding_window: int | None = None
    swa_pattern: int | None = None
    #: Where the entry came from: "builtin", "user", or the name of the plugin that added it.
    origin: str = "builtin"

    def quant(self, name: str) -> CatalogQuant | None:
        return next((q for q in self.quantizations if q.name.lower() == name.lower()), None)
