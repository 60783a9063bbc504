"""Its detector claims every folder and parses files carelessly."""

import struct

from kit_common import KitDriver

from corral import hookimpl
from corral.records import Category, Detection, Format, Kind


class GreedyDriver(KitDriver):
    name = "kit-greedy"
    distribution = "corral-kit-greedy"


@hookimpl
def register_drivers(register):
    register(GreedyDriver)


@hookimpl
def detect_model(path):
    if path.is_dir():
        return Detection(path=path, kind=Kind.MODEL, format=Format.HF_DIR, category=Category.CHAT)
    data = path.read_bytes()
    (count,) = struct.unpack_from("<Q", data, 8000)  # struct.error on a short file
    return Detection(path=path, kind=Kind.MODEL, format=Format.GGUF, category=Category.CHAT) if count else None
