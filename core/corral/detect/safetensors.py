"""safetensors detection: read and validate the JSON header, classify by tensor names.

The layout (from the safetensors spec): an 8-byte little-endian header length N, N bytes of JSON mapping
each tensor name to ``{"dtype", "shape", "data_offsets": [begin, end]}`` plus an optional
``"__metadata__"`` of string pairs, then the tensor data. The safetensors library refuses headers over
100 MB; so does Corral, before reading a byte of them.
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path
from typing import Any, Mapping

import attrs
from attrs import frozen

from corral.detect.bounded import BoundedReader
from corral.detect.tensors import DTYPE_BITS, DTYPE_NAMES, classify
from corral.errors import DetectionError
from corral.records import Detection, Facts, Format, Kind

#: The safetensors library's own limit on the JSON header (``MAX_HEADER_SIZE`` in its Rust source).
MAX_HEADER = 100_000_000
#: Tensors have at most a handful of dimensions; this only stops absurd headers early.
MAX_DIMS = 16
#: Metadata kept in ``facts.extra["metadata"]``: enough for kohya's training notes, never megabytes.
MAX_METADATA_KEYS = 64
MAX_METADATA_VALUE = 1024
#: Shards of one model (``model-00001-of-00004.safetensors``) are detected together.
_SHARD = re.compile(r"^(?P<stem>.+)-(?P<i>\d{5})-of-(?P<n>\d{5})\.safetensors$")
MAX_SHARDS = 4096


@frozen
class TensorEntry:
    """One tensor as the header declares it."""

    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int


@frozen
class SafetensorsHeader:
    """A validated safetensors header."""

    path: Path
    header_len: int
    file_size: int
    tensors: Mapping[str, TensorEntry]
    metadata: Mapping[str, str]

    @property
    def parameters(self) -> int:
        return sum(_numel(t.shape) for t in self.tensors.values())


def _numel(shape: tuple[int, ...]) -> int:
    out = 1
    for d in shape:
        out *= d
    return out


def _corrupt(path: Path, why: str) -> DetectionError:
    return DetectionError(f"{path}: {why}; the file is corrupt or not safetensors")


def _entry(path: Path, name: str, value: Any, data_size: int) -> TensorEntry:
    if not isinstance(value, dict):
        raise _corrupt(path, f"header entry {name!r} is not an object")
    dtype, shape, offsets = value.get("dtype"), value.get("shape"), value.get("data_offsets")
    if dtype not in DTYPE_BITS:
        raise _corrupt(path, f"tensor {name!r} has unknown dtype {dtype!r}")
    if (not isinstance(shape, list) or len(shape) > MAX_DIMS
            or not all(type(d) is int and d >= 0 for d in shape)):
        raise _corrupt(path, f"tensor {name!r} has an invalid shape {str(shape)[:80]}")
    if (not isinstance(offsets, list) or len(offsets) != 2
            or not all(type(o) is int for o in offsets) or not 0 <= offsets[0] <= offsets[1] <= data_size):
        raise _corrupt(path, f"tensor {name!r} has data offsets {str(offsets)[:80]} outside the "
                             f"{data_size}-byte data section")
    bits = _numel(tuple(shape)) * DTYPE_BITS[dtype]
    if (bits + 7) // 8 != offsets[1] - offsets[0]:
        raise _corrupt(path, f"tensor {name!r} declares {offsets[1] - offsets[0]} bytes for shape {shape} "
                             f"of {dtype}")
    return TensorEntry(dtype, tuple(shape), offsets[0], offsets[1])


def read_header(path: Path) -> SafetensorsHeader:
    """Read and validate the header of the safetensors file at ``path``.

    :raises DetectionError: a header length over the format's 100 MB limit or past the end of the file,
        invalid JSON, or an entry without a sane dtype, shape and data offsets.
    """
    path = Path(path)
    with BoundedReader(path, cap=MAX_HEADER + 8, what="safetensors header") as r:
        size = r.size
        if size < 8:
            raise _corrupt(path, f"only {size} bytes long, shorter than a safetensors length prefix")
        (n,) = struct.unpack("<Q", r.read(8))
        if n > MAX_HEADER:
            raise _corrupt(path, f"safetensors header claims {n} bytes (limit {MAX_HEADER})")
        if n > size - 8:
            raise _corrupt(path, f"safetensors header claims {n} bytes but the file has only {size - 8} "
                                 "after the length prefix")
        raw = r.read(n)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise _corrupt(path, f"the safetensors header is not valid JSON ({exc})") from None
    except RecursionError:  # json recurses per nesting level: "[[[[..." a megabyte deep overflows it
        raise _corrupt(path, "the safetensors header is JSON nested too deeply to be a tensor table") from None
    if not isinstance(header, dict):
        raise _corrupt(path, "the safetensors header is not a JSON object")
    data_size = size - 8 - n
    meta_raw = header.pop("__metadata__", None) or {}
    if not isinstance(meta_raw, dict):
        raise _corrupt(path, "__metadata__ is not an object")
    metadata = {str(k)[:MAX_METADATA_VALUE]: str(v)[:MAX_METADATA_VALUE]
                for k, v in list(meta_raw.items())[:MAX_METADATA_KEYS]}
    tensors = {name: _entry(path, name, value, data_size) for name, value in header.items()}
    return SafetensorsHeader(path, n, size, tensors, metadata)


def shard_files(path: Path) -> list[Path]:
    """Every shard of the model that ``path`` is one shard of (just ``[path]`` for a whole file).

    :raises DetectionError: a shard is missing (the download is incomplete).
    """
    m = _SHARD.match(path.name)
    if not m:
        return [path]
    count = int(m.group("n"))
    if not 1 <= count <= MAX_SHARDS:
        return [path]
    width = len(m.group("i"))
    files = [path.with_name(f"{m.group('stem')}-{i:0{width}d}-of-{m.group('n')}.safetensors")
             for i in range(1, count + 1)]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise DetectionError(f"{path}: shard {missing[0]} of {count} is missing; finish the download")
    return files


def facts_extra(header: SafetensorsHeader) -> dict[str, Any]:
    """Header facts that have no Facts field of their own."""
    extra: dict[str, Any] = {}
    if header.metadata:
        extra["metadata"] = dict(header.metadata)
    return extra


def detect_safetensors(path: Path) -> Detection:
    """Detect a safetensors file (a whole model, a shard of one, a component or a LoRA) by its header.

    :raises DetectionError: the header is malformed (see :func:`read_header`).
    """
    path = Path(path)
    files = shard_files(path)
    headers = [read_header(f) for f in files]
    shapes: dict[str, tuple[int, ...]] = {}
    dtypes: dict[str, str] = {}
    for h in headers:
        for name, t in h.tensors.items():
            shapes[name] = t.shape
            dtypes[name] = DTYPE_NAMES[t.dtype]
    verdict = classify(shapes, dtypes)
    reasons = [f"safetensors header: {len(shapes)} tensors"
               + (f" in {len(files)} shards" if len(files) > 1 else "")]
    reasons += verdict.reasons
    extra = {**verdict.facts.extra, **facts_extra(headers[0])}
    facts = verdict.facts
    if facts.lora_rank is None and verdict.kind == Kind.LORA:
        # kohya writes the rank into its training metadata; use it when shapes did not say.
        dim = headers[0].metadata.get("ss_network_dim", "")
        if dim.isdigit():
            facts = _evolve(facts, lora_rank=int(dim))
    alpha = headers[0].metadata.get("ss_network_alpha")
    if verdict.kind == Kind.LORA and alpha:
        try:
            facts = _evolve(facts, lora_alpha=float(alpha))
        except ValueError:
            pass
    return Detection(
        path=files[0],
        kind=verdict.kind,
        format=Format.SAFETENSORS,
        category=verdict.category,
        component=verdict.component,
        confidence=verdict.confidence,
        reasons=tuple(reasons),
        facts=_evolve(facts, extra=extra),
        paths=tuple(files),
        size=sum(h.file_size for h in headers),
    )


def _evolve(facts: Facts, **changes: Any) -> Facts:
    return attrs.evolve(facts, **changes)


def shapes_of(path: Path) -> dict[str, tuple[int, ...]] | None:
    """Tensor name -> shape for a safetensors file, or for the safetensors weights of a model folder.

    A folder's weights are its top-level ``*.safetensors`` files (shards included), or a PEFT adapter's
    ``adapter_model.safetensors``. Anything else (pickles, GGUF, ONNX, a folder without safetensors)
    gives None. Malformed headers raise :class:`corral.errors.DetectionError`.
    """
    path = Path(path)
    if path.is_file():
        if path.suffix.lower() != ".safetensors":
            return None
        return {name: t.shape for name, t in read_header(path).tensors.items()}
    if not path.is_dir():
        return None
    files = sorted(p for p in path.glob("*.safetensors") if p.is_file())
    if not files:
        return None
    out: dict[str, tuple[int, ...]] = {}
    for f in files:
        out.update({name: t.shape for name, t in read_header(f).tensors.items()})
    return out
