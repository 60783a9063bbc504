"""ONNX files: recognised, recorded, not yet served.

Corral does not parse the protobuf (that needs the onnx package and reads the whole graph); it checks the
file is there and non-empty and takes the category from a transformers config.json beside it, if any.
"""

from __future__ import annotations

from pathlib import Path

from corral.errors import DetectionError
from corral.records import Detection, Facts, Format, Kind


def detect_onnx(path: Path) -> Detection:
    """Detect an ``.onnx`` file, with its external-data file when it has one.

    :raises DetectionError: the file is empty.
    """
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        raise DetectionError(f"{path}: the ONNX file is empty; download it again")
    reasons = ["file name .onnx (the protobuf graph is not parsed)", "no plugin serves ONNX yet"]
    category, architecture = None, None
    # Hub repositories keep ONNX exports in onnx/ next to (or below) the transformers config.json.
    for folder in (path.parent, path.parent.parent):
        config = folder / "config.json"
        if config.is_file():
            from corral.detect.hfdir import category_from_config, read_json

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
        path=path, kind=Kind.MODEL, format=Format.ONNX, category=category, confidence=0.3,
        reasons=tuple(reasons), facts=Facts(architecture=architecture), paths=tuple(paths),
        size=sum(p.stat().st_size for p in paths),
    )
