"""ONNX files: recognised by content, recorded, not yet served.

An ONNX file is a protobuf ``ModelProto``. Corral does not parse the graph (that needs the onnx package and
reads the whole file); it walks the message's first top-level fields in a bounded prefix: ``ir_version``
comes first in every file the onnx library writes, then producer and opset fields, each with the wire type
ONNX defines. Random bytes and other formats renamed ``.onnx`` fail that walk. The category comes from a
transformers config.json beside the file, if any.
"""

from __future__ import annotations

from pathlib import Path

from corral.errors import DetectionError
from corral.records import Detection, Facts, Format, Kind

#: How much of the file the walk may read.
PREFIX = 64 * 1024
#: ModelProto's top-level fields -> protobuf wire type (0 varint, 2 length-delimited).
_FIELDS = {1: 0, 2: 2, 3: 2, 4: 2, 5: 0, 6: 2, 7: 2, 8: 2, 14: 2, 20: 2, 25: 2, 26: 2}
#: IR versions released so far are 1..11; leave room for a few more.
_MAX_IR_VERSION = 32


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while pos < len(data) and shift < 64:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
    raise ValueError("truncated varint")


def read_onnx_header(path: Path) -> dict[str, object]:
    """``ir_version``, ``producer_name``, ``producer_version`` from the first fields of ``path``.

    :raises DetectionError: the file does not start like an ONNX ``ModelProto``.
    """
    with open(path, "rb") as f:
        data = f.read(PREFIX)
    size = path.stat().st_size
    bad = f"{path}: not an ONNX model (the file does not start with an ONNX protobuf header); " \
          "check the file, or re-export it"
    found: dict[str, object] = {}
    pos = 0
    try:
        while pos < len(data):
            tag, pos = _varint(data, pos)
            field, wire = tag >> 3, tag & 7
            if _FIELDS.get(field) != wire:
                raise ValueError(f"field {field} wire type {wire}")
            if not found and field != 1:
                raise ValueError("ir_version is not the first field")
            if wire == 0:
                value, pos = _varint(data, pos)
                if field == 1:
                    if not 1 <= value <= _MAX_IR_VERSION:
                        raise ValueError(f"ir_version {value}")
                    found["ir_version"] = value
                continue
            length, pos = _varint(data, pos)
            if pos + length > size:
                raise ValueError("a field runs past the end of the file")
            if field in (2, 3):
                if pos + length > len(data) or length > 256:
                    raise ValueError("producer field too long")
                name = "producer_name" if field == 2 else "producer_version"
                found[name] = data[pos:pos + length].decode("utf-8")
            if field == 7 or pos + length > len(data):
                break  # the graph (or a field longer than the prefix): the header has been seen
            pos += length
    except (ValueError, UnicodeDecodeError):
        raise DetectionError(bad) from None
    if "ir_version" not in found:
        raise DetectionError(bad)
    return found


def detect_onnx(path: Path) -> Detection:
    """Detect an ``.onnx`` file, with its external-data file when it has one.

    :raises DetectionError: the file is empty or not an ONNX protobuf.
    """
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        raise DetectionError(f"{path}: the ONNX file is empty; download it again")
    header = read_onnx_header(path)
    producer = " ".join(str(header[k]) for k in ("producer_name", "producer_version") if header.get(k))
    reasons = [f"ONNX protobuf header: IR version {header['ir_version']}"
               + (f", written by {producer}" if producer else ""), "no plugin serves ONNX yet"]
    category, architecture = None, None
    # Hub repositories keep ONNX exports in onnx/ next to (or below) the transformers config.json.
    for folder in (path.parent, path.parent.parent):
        config = folder / "config.json"
        if config.is_file():
            from corral.detect.bounded import read_json
            from corral.detect.hfdir import category_from_config

            try:
                data = read_json(config)
            except DetectionError:
                break
            if isinstance(data, dict):
                category, why = category_from_config(data, folder)
                architecture = data.get("model_type") if isinstance(data.get("model_type"), str) else None
                reasons.insert(1, f"{config} beside it: {why}")
            break
    paths = [path] + [p for p in (path.with_name(path.name + "_data"), path.with_name(path.name + ".data"))
                      if p.is_file()]
    return Detection(
        path=path, kind=Kind.MODEL, format=Format.ONNX, category=category, confidence=0.6,
        reasons=tuple(reasons), facts=Facts(architecture=architecture), paths=tuple(paths),
        size=sum(p.stat().st_size for p in paths),
    )
