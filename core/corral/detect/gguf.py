"""GGUF detection: a bounded, streaming header parser and the verdict built on it.

Why not ``gguf.GGUFReader``: it memory-maps the whole file and builds a numpy view for every element of
every array (a 262 144-token vocabulary becomes half a million Python objects), and it trusts the
lengths it reads. Detection only needs the scalars, the lengths of the big arrays and the tensor
shapes, and the file is untrusted, so this parser walks the header through a
:class:`~corral.detect.bounded.BoundedReader`: every count and length is checked before anything is
allocated, big arrays are skipped (fixed-size ones in one seek, string arrays by their lengths) and
only their length is kept, and nothing past the header is ever read.

Layout (versions 2 and 3; version 3 only adds big-endian files): magic ``GGUF``, u32 version,
u64 tensor_count, u64 kv_count, the key/value pairs, the tensor infos (name, n_dims, dims, type,
offset), then the aligned tensor data.
"""

from __future__ import annotations

import math
import re
import struct
from pathlib import Path
from typing import Any, Iterable

from attrs import field, frozen

from corral.detect.bounded import BoundedReader
from corral.errors import DetectionError
from corral.records import Category, ComponentKind, Detection, Facts, Format, Kind

# Bounds on untrusted headers. Real files stay far below them: Gemma 3's 262 144-token vocabulary makes
# a ~6 MB header, the largest MoE models have a few thousand tensors and a few hundred keys.
HEADER_CAP = 64 * 1024**2
MAX_TENSORS = 1_000_000
MAX_KV = 100_000
MAX_STRING = 8 * 1024**2
MAX_ARRAY = 10_000_000
MAX_DIMS = 8  # ggml itself has 4; leave room without allowing nonsense
#: Arrays up to this length are kept in the metadata; longer ones become a :class:`GGUFArray`.
KEEP_ARRAY = 256

_STRING, _ARRAY = 8, 9
#: GGUF value type -> struct format character (STRING and ARRAY are handled apart).
_SCALAR_FORMATS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}

#: ggml tensor type -> (name, elements per block, bytes per block); checked against gguf in the tests.
GGML_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20), 6: ("Q5_0", 32, 22),
    7: ("Q5_1", 32, 24), 8: ("Q8_0", 32, 34), 9: ("Q8_1", 32, 40), 10: ("Q2_K", 256, 84),
    11: ("Q3_K", 256, 110), 12: ("Q4_K", 256, 144), 13: ("Q5_K", 256, 176), 14: ("Q6_K", 256, 210),
    15: ("Q8_K", 256, 292), 16: ("IQ2_XXS", 256, 66), 17: ("IQ2_XS", 256, 74), 18: ("IQ3_XXS", 256, 98),
    19: ("IQ1_S", 256, 50), 20: ("IQ4_NL", 32, 18), 21: ("IQ3_S", 256, 110), 22: ("IQ2_S", 256, 82),
    23: ("IQ4_XS", 256, 136), 24: ("I8", 1, 1), 25: ("I16", 1, 2), 26: ("I32", 1, 4), 27: ("I64", 1, 8),
    28: ("F64", 1, 8), 29: ("IQ1_M", 256, 56), 30: ("BF16", 1, 2), 34: ("TQ1_0", 256, 54),
    35: ("TQ2_0", 256, 66), 39: ("MXFP4", 32, 17),
}  # fmt: skip

#: ``general.file_type`` -> llama.cpp's quantization name (``LLAMA_FTYPE_MOSTLY_Q4_K_M`` -> ``Q4_K_M``).
FILE_TYPES: dict[int, str] = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K", 11: "Q3_K_S",
    12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K",
    19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS", 23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL",
    26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S", 29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16",
    36: "TQ1_0", 37: "TQ2_0", 38: "MXFP4_MOE",
}  # fmt: skip

SPLIT_RE = re.compile(r"^(?P<stem>.+)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$", re.IGNORECASE)


@frozen
class GGUFArray:
    """A metadata array too long to keep: its element type (GGUF value type) and length."""

    type: int
    length: int

    def __len__(self) -> int:
        return self.length


@frozen
class TensorInfo:
    """One tensor's header entry. ``shape`` is in GGUF order: ``shape[0]`` is the input (row) size."""

    name: str
    shape: tuple[int, ...]
    type: int
    offset: int

    @property
    def elements(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int | None:
        """Bytes of data, or None for a tensor type this table does not know."""
        known = GGML_TYPES.get(self.type)
        if known is None:
            return None
        _, block, size = known
        return self.elements // block * size


@frozen
class GGUFHeader:
    """Everything before a GGUF's tensor data: metadata (long arrays as :class:`GGUFArray`), tensors."""

    path: Path
    version: int
    metadata: dict[str, Any]
    tensors: tuple[TensorInfo, ...]
    header_size: int
    data_offset: int
    file_size: int
    endian: str = "<"
    #: Bytes the tensor data needs from the start of the file (None when a tensor type is unknown).
    data_end: int | None = field(default=None)

    @property
    def architecture(self) -> str | None:
        arch = self.metadata.get("general.architecture")
        return arch if isinstance(arch, str) else None

    def arch_value(self, key: str) -> Any:
        """``{architecture}.{key}`` from the metadata, or None."""
        return self.metadata.get(f"{self.architecture}.{key}")

    @property
    def parameters(self) -> int:
        return sum(t.elements for t in self.tensors)


class _Parser:
    def __init__(self, reader: BoundedReader, endian: str) -> None:
        self.r = reader
        self.path = reader.path
        self.u32 = struct.Struct(endian + "I")
        self.u64 = struct.Struct(endian + "Q")
        self.scalars = {t: struct.Struct(endian + c) for t, c in _SCALAR_FORMATS.items()}

    def fail(self, what: str) -> DetectionError:
        return DetectionError(f"{self.path}: {what}; the file is malformed or hostile, not a GGUF Corral can read")

    def within(self, limit: int) -> None:
        # The reader caps bytes fetched; skipped arrays are not fetched, so cap the header's extent too.
        if self.r.tell() > limit:
            raise self.fail(f"the header runs past byte {limit}")

    def count(self, what: str, bound: int) -> int:
        at = self.r.tell()
        (n,) = self.r.unpack(self.u64)
        if n > bound:
            raise self.fail(f"{what} at byte {at} is {n} (at most {bound} is plausible)")
        return n

    def string(self) -> str:
        n = self.count("a string length", MAX_STRING)
        return self.r.read_exact(n).decode("utf-8", errors="replace")

    def value(self, vtype: int, key: str) -> Any:
        if vtype == _STRING:
            return self.string()
        if vtype == _ARRAY:
            return self.array(key)
        fmt = self.scalars.get(vtype)
        if fmt is None:
            raise self.fail(f"key {key!r} has unknown value type {vtype}")
        return self.r.unpack(fmt)[0]

    def array(self, key: str) -> Any:
        (etype,) = self.r.unpack(self.u32)
        n = self.count(f"the length of array {key!r}", MAX_ARRAY)
        if etype == _ARRAY:
            raise self.fail(f"key {key!r} is an array of arrays, which llama.cpp does not accept")
        if etype == _STRING:
            if n <= KEEP_ARRAY:
                return tuple(self.string() for _ in range(n))
            self.r.skip_prefixed(n, self.u64, MAX_STRING)
            return GGUFArray(etype, n)
        fmt = self.scalars.get(etype)
        if fmt is None:
            raise self.fail(f"array {key!r} has unknown element type {etype}")
        if n <= KEEP_ARRAY:
            many = struct.Struct(fmt.format[0] + fmt.format[1:] * n)
            return many.unpack(self.r.read_exact(many.size))
        self.r.skip(n * fmt.size)  # fixed-size elements: one seek, nothing fetched
        return GGUFArray(etype, n)


def read_gguf_header(path: Path | str, *, limit: int = HEADER_CAP) -> GGUFHeader:
    """Parse a GGUF file's header without reading its tensor data or trusting any length in it.

    Raises :class:`DetectionError` for a file that is not GGUF, is truncated (header or tensor data),
    or declares implausible counts or lengths, before allocating anything they ask for.
    """
    path = Path(path)
    with BoundedReader(path, limit, what="GGUF header") as r:
        magic = r.peek(4)
        if magic != b"GGUF":
            raise DetectionError(f"{path}: not a GGUF file (starts with {magic!r}, not b'GGUF')")
        r.skip(4)
        raw = r.read_exact(4)
        endian = "<"
        (version,) = struct.unpack("<I", raw)
        if version not in (2, 3) and struct.unpack(">I", raw)[0] in (2, 3):
            endian, version = ">", struct.unpack(">I", raw)[0]
        if version == 1:
            raise DetectionError(f"{path}: GGUF version 1 is obsolete; convert the model again with llama.cpp")
        if version not in (2, 3):
            raise DetectionError(f"{path}: unsupported GGUF version {version} (Corral reads versions 2 and 3)")
        p = _Parser(r, endian)
        n_tensors = p.count("tensor_count", MAX_TENSORS)
        n_kv = p.count("kv_count", MAX_KV)
        # Each key/value pair takes at least 12 bytes and each tensor info 24: refuse early, before
        # parsing, when the file cannot possibly hold what its header declares.
        needed = r.tell() + 12 * n_kv + 24 * n_tensors
        if needed > r.size:
            raise DetectionError(
                f"{path} is truncated (header needs byte {needed} for {n_kv} keys and {n_tensors} tensors, "
                f"file has {r.size}); the download or copy is probably incomplete"
            )
        metadata: dict[str, Any] = {}
        for _ in range(n_kv):
            key = p.string()
            (vtype,) = r.unpack(p.u32)
            metadata[key] = p.value(vtype, key)
            p.within(limit)
        tensors = []
        for _ in range(n_tensors):
            name = p.string()
            (n_dims,) = r.unpack(p.u32)
            if n_dims > MAX_DIMS:
                raise p.fail(f"tensor {name!r} has {n_dims} dimensions")
            dims = struct.unpack(endian + "Q" * n_dims, r.read_exact(8 * n_dims))
            (ttype,) = r.unpack(p.u32)
            (offset,) = r.unpack(p.u64)
            tensors.append(TensorInfo(name, dims, ttype, offset))
        p.within(limit)
        header_size = r.tell()
        file_size = r.size
    alignment = metadata.get("general.alignment", 32)
    if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
        raise DetectionError(f"{path}: general.alignment {alignment!r} is not a power of two")
    data_offset = -(-header_size // alignment) * alignment
    data_end: int | None = header_size  # no tensors, no data section (nor its alignment padding)
    for t in tensors:
        nbytes = t.nbytes
        if nbytes is None:
            data_end = None
            break
        data_end = max(data_end, data_offset + t.offset + nbytes)
    if data_end is not None and data_end > file_size:
        raise DetectionError(
            f"{path} is truncated (tensor data needs byte {data_end}, file has {file_size}); "
            "the download or copy is probably incomplete"
        )
    return GGUFHeader(
        path=path,
        version=version,
        metadata=metadata,
        tensors=tuple(tensors),
        header_size=header_size,
        data_offset=data_offset,
        file_size=file_size,
        endian=endian,
        data_end=data_end,
    )


def quantization_name(file_type: int | None, tensors: Iterable[TensorInfo] = ()) -> str | None:
    """llama.cpp's name for ``general.file_type`` (15 -> "Q4_K_M").

    Without a file type, the type of most weight matrices stands in (llama.cpp's own guess).
    """
    if isinstance(file_type, int):
        ftype = file_type & ~1024  # LLAMA_FTYPE_GUESSED marks a type llama.cpp inferred itself
        if ftype in FILE_TYPES:
            return FILE_TYPES[ftype]
        import gguf  # a newer type than the table knows

        try:
            return gguf.LlamaFileType(ftype).name.removeprefix("MOSTLY_").removeprefix("ALL_")
        except ValueError:
            return f"file_type {ftype}"
    counts: dict[int, int] = {}
    for t in tensors:
        if len(t.shape) >= 2:
            counts[t.type] = counts.get(t.type, 0) + t.elements
    if not counts:
        return None
    best = max(counts, key=counts.__getitem__)
    return GGML_TYPES.get(best, (f"type {best}",))[0]


def split_info(path: Path) -> tuple[str, int, int] | None:
    """``(stem, part, count)`` for a name like ``model-00002-of-00003.gguf``, else None."""
    m = SPLIT_RE.match(path.name)
    if not m:
        return None
    return m["stem"], int(m["no"]), int(m["count"])


def split_parts(path: Path) -> list[Path]:
    """Every part of the split GGUF whose first part is ``path``, checked to exist, in order."""
    stem, _, count = split_info(path)  # type: ignore[misc]
    width = len(SPLIT_RE.match(path.name)["count"])  # type: ignore[index]
    parts = [path.with_name(f"{stem}-{i:0{width}d}-of-{count:0{width}d}.gguf") for i in range(1, count + 1)]
    missing = [p.name for p in parts if not p.is_file()]
    if missing:
        raise DetectionError(
            f"{path} is part 1 of a {count}-part split GGUF, but {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} missing beside it; download every part"
        )
    return parts


# --- verdict -----------------------------------------------------------------------------------------

#: Encoder-only architectures: embedding models even without a pooling key.
ENCODER_ARCHS = frozenset({"bert", "nomic-bert", "nomic-bert-moe", "jina-bert-v2", "jina-bert-v3", "modern-bert",
                           "neo-bert", "t5encoder"})  # fmt: skip
POOLING_RANK = 4  # llama.cpp's LLAMA_POOLING_TYPE_RANK: a reranker head


def detect_gguf(path: Path) -> Detection:
    """Detect a GGUF file: a model (chat, multimodal, embedding, rerank), an mmproj component, or a LoRA.

    Raises :class:`DetectionError` for a malformed or truncated file, and for a later part of a split
    GGUF (the message names part 1, which is what to import).
    """
    path = Path(path)
    split = split_info(path)
    if split and split[1] != 1:
        stem, no, count = split
        first = SPLIT_RE.sub(lambda m: f"{m['stem']}-{1:0{len(m['no'])}d}-of-{m['count']}.gguf", path.name)
        raise DetectionError(
            f"{path} is part {no} of {count} of a split GGUF; import its first part instead: {path.with_name(first)}"
        )
    header = read_gguf_header(path)
    meta = header.metadata
    paths: tuple[Path, ...] = (path,)
    size, parameters = header.file_size, header.parameters
    reasons = [f"GGUF v{header.version} header: {len(header.tensors)} tensors, {len(meta)} metadata keys"]
    if split:
        parts = split_parts(path)
        for part in parts[1:]:
            other = read_gguf_header(part)
            size += other.file_size
            parameters += other.parameters
        paths = tuple(parts)
        reasons.append(f"split GGUF in {len(parts)} parts")
    arch = header.architecture
    if arch:
        reasons.append(f"general.architecture = {arch}")
    base_extra = {
        k: v
        for k, v in {
            "name": meta.get("general.name"),
            "file_type": meta.get("general.file_type"),
            "tensor_count": len(header.tensors),
            "gguf_version": header.version,
        }.items()
        if v is not None
    }
    quant = quantization_name(meta.get("general.file_type"), header.tensors)
    gtype = meta.get("general.type")

    if arch == "clip" or gtype == "mmproj":
        extra = {
            **base_extra,
            "projector_type": meta.get("clip.projector_type") or meta.get("clip.vision.projector_type"),
            "projection_dim": meta.get("clip.vision.projection_dim"),
            # The text model's width shows among the projector tensors' dimensions (LLaVA's mm.2,
            # Gemma 3's mm.input_projection); clip.vision.projection_dim is CLIP's own width instead.
            "projector_dims": sorted({d for t in header.tensors if t.name.startswith("mm.") for d in t.shape}) or None,
            "has_vision_encoder": meta.get("clip.has_vision_encoder"),
            "has_audio_encoder": meta.get("clip.has_audio_encoder"),
        }
        reasons.append("a CLIP-style projector (general.architecture clip): an mmproj for a multimodal model")
        return Detection(
            path=path, kind=Kind.COMPONENT, format=Format.GGUF, component=ComponentKind.MMPROJ,
            reasons=tuple(reasons), paths=paths, size=size,
            facts=Facts(architecture=arch, parameters=parameters, quantization=quant,
                        extra={k: v for k, v in extra.items() if v is not None}),
        )  # fmt: skip

    if gtype == "adapter":
        atype = meta.get("adapter.type")
        if atype != "lora":
            raise DetectionError(f"{path}: a GGUF adapter of type {atype!r}; Corral handles LoRA adapters only")
        ranks = sorted({t.shape[-1] for t in header.tensors if t.name.endswith(".lora_a") and len(t.shape) == 2})
        alpha = meta.get("adapter.lora.alpha")
        reasons.append(f"general.type adapter, adapter.type lora, for base architecture {arch}")
        return Detection(
            path=path, kind=Kind.LORA, format=Format.GGUF, reasons=tuple(reasons), paths=paths, size=size,
            facts=Facts(
                architecture=arch, parameters=parameters, quantization=quant,
                lora_rank=ranks[-1] if ranks else None,
                lora_alpha=float(alpha) if isinstance(alpha, (int, float)) else None,
                base_model=meta.get("general.base_model.0.name"),
                extra={**base_extra, **({"ranks": ranks} if len(ranks) > 1 else {})},
            ),
        )  # fmt: skip

    if not parameters:
        raise DetectionError(f"{path}: a GGUF without tensors (metadata only), not a model")
    facts = _model_facts(header, parameters, quant, base_extra)
    pooling = header.arch_value("pooling_type")
    attachments: tuple[Detection, ...] = ()
    confidence = 0.9
    if pooling is not None or arch in ENCODER_ARCHS:
        category = Category.RERANK if pooling == POOLING_RANK else Category.EMBEDDING
        why = f"pooling_type {pooling}" if pooling is not None else f"encoder-only architecture {arch}"
        reasons.append(f"{category}: {why}")
        facts = _evolve(facts, embedding_dims=facts.hidden_size)
    else:
        category = Category.CHAT
        reasons.append("a decoder language model with its tokenizer: chat")
        if facts.has_chat_template:
            confidence = 0.95
            reasons.append("carries a chat template")
        mmproj = _find_mmproj(path, facts.hidden_size)
        if mmproj is not None:
            category, confidence, attachments = Category.MULTIMODAL, 0.95, (mmproj,)
            reasons.append(f"multimodal: a verified mmproj GGUF sits beside it ({mmproj.path.name})")
        else:
            from corral.detect.hints import multimodal_name_hints

            hints = multimodal_name_hints(path)
            if hints:
                category, confidence = Category.MULTIMODAL, 0.6
                reasons.extend(hints)
                reasons.append("no mmproj found beside it: attach one with `corral component add MODEL mmproj PATH`")
    return Detection(
        path=path, kind=Kind.MODEL, format=Format.GGUF, category=category, confidence=confidence,
        reasons=tuple(reasons), facts=facts, paths=paths, size=size, attachments=attachments,
    )  # fmt: skip


def _evolve(facts: Facts, **changes: Any) -> Facts:
    import attrs

    return attrs.evolve(facts, **changes)


def first_int(value: Any) -> int | None:
    """An int hparam; per-layer arrays (some archs vary heads by layer) give their largest value."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, tuple) and value and all(isinstance(v, int) for v in value):
        return max(value)
    return None


def _positive(value: Any) -> int | None:
    """A size or count fact: a broken or hostile header's zero or negative value is no fact at all (the
    llama.cpp driver refuses such a file when loading, naming the key)."""
    number = first_int(value)
    return number if number is not None and number > 0 else None


def _model_facts(header: GGUFHeader, parameters: int, quant: str | None, extra: dict[str, Any]) -> Facts:
    meta, av = header.metadata, header.arch_value
    tokens = meta.get("tokenizer.ggml.tokens")
    vocab = len(tokens) if tokens is not None else first_int(av("vocab_size"))
    more = {
        "sliding_window": av("attention.sliding_window"),
        "key_length": av("attention.key_length"),
        "value_length": av("attention.value_length"),
        "rope_freq_base": av("rope.freq_base"),
        "expert_count": av("expert_count"),
        "tokenizer": meta.get("tokenizer.ggml.model"),
    }
    return Facts(
        architecture=header.architecture,
        parameters=parameters,
        context_length=_positive(av("context_length")),
        quantization=quant,
        layers=_positive(av("block_count")),
        heads=_positive(av("attention.head_count")),
        kv_heads=_positive(av("attention.head_count_kv")),
        hidden_size=_positive(av("embedding_length")),
        vocab_size=vocab if vocab and vocab > 0 else None,
        has_chat_template="tokenizer.chat_template" in meta,
        extra={**extra, **{k: v for k, v in more.items() if v is not None and not isinstance(v, GGUFArray)}},
    )


def _find_mmproj(path: Path, n_embd: int | None) -> Detection | None:
    """A verified mmproj GGUF beside ``path``: the one whose projection fits ``n_embd`` when several do."""
    from corral.detect.hints import mmproj_siblings

    found = []
    for sibling in mmproj_siblings(path):
        try:
            detection = detect_gguf(sibling)
        except DetectionError:
            continue  # a broken sibling must not break the model's own detection
        if detection.kind == Kind.COMPONENT and detection.component == ComponentKind.MMPROJ:
            found.append(detection)
    # llama.cpp refuses a projector whose output width differs from the model's n_embd. That width is
    # one of the mm.* tensor dimensions; a projector without mm.* tensors (or a model without n_embd)
    # cannot be judged, so only a projector whose dimensions all miss n_embd is ruled out.
    dims = [d.facts.extra.get("projector_dims") or [] for d in found]
    fitting = [d for d, dim in zip(found, dims) if n_embd is not None and n_embd in dim]
    unknown = [d for d, dim in zip(found, dims) if n_embd is None or not dim]
    return (fitting or unknown or [None])[0]
