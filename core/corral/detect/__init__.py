"""The core's format detection: say what a file or directory is by its content, names second.

Every detector reads headers only, through :class:`corral.detect.bounded.BoundedReader`, and bounds
every length it reads: files are untrusted. Plugins are asked first (the ``detect_model`` hook); this
module answers last, through :mod:`corral.detect.builtin`.
"""

from __future__ import annotations

import struct
from pathlib import Path

from corral.detect.bounded import BoundedReader
from corral.detect.candidates import MODEL_SUFFIXES, iter_candidates
from corral.detect.lora_check import check_lora_fits
from corral.errors import DetectionError, NotFound
from corral.records import Detection

__all__ = ["LOOKED_FOR", "MODEL_SUFFIXES", "check_lora_fits", "detect_path", "iter_candidates", "sniff"]

LOOKED_FOR = (
    "looked for GGUF, safetensors, PyTorch checkpoints, ONNX, Hugging Face/diffusers/Kokoro directories"
)
#: Largest safetensors JSON header that the sniffer takes for one (the format itself caps it at 100 MB).
_SAFETENSORS_MAX_HEADER = 100 * 1024**2
#: Magic numbers of llama.cpp's pre-GGUF files (u32 "ggml"/"ggmf"/"ggjt" written little-endian).
_OLD_GGML = (b"lmgg", b"fmgg", b"tjgg")
_PICKLE_SUFFIXES = frozenset({".bin", ".pt", ".pth", ".ckpt"})


def sniff(head: bytes, size: int) -> str | None:
    """The format that the first bytes of a file announce: "gguf", "pickle", "safetensors" or None.

    ``head`` is at least the first 9 bytes (fewer only for a shorter file); ``size`` is the file size.
    """
    if head[:4] == b"GGUF":
        return "gguf"
    # A zip (torch.save since 1.6) or a bare pickle stream (protocol 2+ starts with PROTO 0x80).
    if head[:4] == b"PK\x03\x04" or head[:1] == b"\x80":
        return "pickle"
    if len(head) >= 9:
        (n,) = struct.unpack("<Q", head[:8])
        if 2 <= n <= min(size - 8, _SAFETENSORS_MAX_HEADER) and head[8:9] == b"{":
            return "safetensors"
    return None


def detect_path(path: Path, *, allow_unsafe: bool = False) -> Detection:
    """Say what ``path`` is: a model, a component or a LoRA, in which format, with which facts.

    Content decides first (magic bytes, headers); the file name is used only when the content names no
    format, and then the detector for that name explains what is wrong with the file.

    :param allow_unsafe: detect a pickle checkpoint that imports non-allow-listed globals instead of
        raising :class:`corral.errors.UnsafeFile` (the detection's ``unsafe`` says why).
    :raises NotFound: the path does not exist.
    :raises DetectionError: not a model Corral recognises, or a malformed file of a known format.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise NotFound(f"{path}: no such file or directory")
    path = path.resolve()
    if path.is_dir():
        from corral.detect.hfdir import detect_directory

        return detect_directory(path, allow_unsafe=allow_unsafe, detect_file=detect_path)
    if not path.is_file():
        raise DetectionError(f"{path}: not a regular file or directory")
    suffix = path.suffix.lower()
    if suffix == ".pth":
        # A Kokoro checkpoint is a plain .pth; only its folder (config.json, voices/) says what it is.
        from corral.detect.kokoro import detect_kokoro_file

        found = detect_kokoro_file(path)
        if found is not None:
            return found
    with BoundedReader(path, 16) as reader:
        head = reader.peek(16)
        size = reader.size
    if size == 0:
        raise DetectionError(f"{path}: the file is empty; {LOOKED_FOR}")
    fmt = sniff(head, size)
    if fmt is None:
        if head[:4] in _OLD_GGML:
            raise DetectionError(
                f"{path}: an old GGML file (before GGUF); llama.cpp no longer reads it, convert it to GGUF"
            )
        # Names second: the named format's detector says what is wrong with the file.
        fmt = {".gguf": "gguf", ".safetensors": "safetensors", ".onnx": "onnx"}.get(suffix)
        if fmt is None and suffix in _PICKLE_SUFFIXES:
            fmt = "pickle"
    if fmt is None:
        raise DetectionError(f"{path}: not a model Corral recognises ({LOOKED_FOR})")
    return _detect_as(fmt, path, allow_unsafe)


def _detect_as(fmt: str, path: Path, allow_unsafe: bool) -> Detection:
    if fmt == "gguf":
        from corral.detect.gguf import detect_gguf

        return detect_gguf(path)
    if fmt == "safetensors":
        from corral.detect.safetensors import detect_safetensors

        return detect_safetensors(path)
    if fmt == "pickle":
        from corral.detect.pickle_scan import detect_pickle

        return detect_pickle(path, allow_unsafe=allow_unsafe)
    from corral.detect.onnx import detect_onnx

    return detect_onnx(path)

