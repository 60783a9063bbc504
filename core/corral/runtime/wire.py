"""The runner protocol's frames: length-prefixed JSON over a local socket, and the plain-data encoding of
what crosses it (task arguments, answers, stream pieces, errors).

A frame is a 4-byte big-endian length, then that many bytes of UTF-8 JSON holding one object. Frames
over :data:`MAX_FRAME` are refused on both ends, so a corrupt length never makes the reader allocate
gigabytes. Nothing is ever unpickled: values that JSON lacks travel as tagged objects
(``{"__corral__": "tuple", ...}``) and are rebuilt only as the few types listed here (tuples, paths,
bytes, numeric numpy arrays, PIL images from raw pixels, and the answer records of
:mod:`corral.records` and :mod:`corral.tools`). A runner process holds whatever a model file put in it;
the server trusts none of it beyond these shapes.
"""

from __future__ import annotations

import base64
import json
import socket
import struct
import threading
from pathlib import PurePath
from typing import Any, Callable

import attrs

from corral.errors import CorralError, RunnerFailed
from corral.records import ChatResult

#: The largest frame either side sends or accepts (an embedding batch or a generated image fits).
MAX_FRAME = 256 * 1024 * 1024

TAG = "__corral__"
_HEADER = struct.Struct(">I")

#: numpy dtypes an array may arrive as (no object or structured dtypes).
_DTYPES = frozenset({"bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
                     "float16", "float32", "float64"})
#: PIL image modes an image may arrive as.
_MODES = frozenset({"1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "YCbCr", "I", "F", "I;16"})


class WireError(Exception):
    """A frame that breaks the protocol (too large, cut short, not a JSON object), or a value it cannot
    carry. The connection is not usable after one on receive."""


# --- frames --------------------------------------------------------------------------------------------


class Channel:
    """One end of a runner connection: :meth:`send` from any thread, :meth:`receive` from one reader."""

    def __init__(self, sock: socket.socket, *, max_frame: int = MAX_FRAME) -> None:
        self.sock = sock
        self.max_frame = max_frame
        self._send_lock = threading.Lock()

    def send(self, message: dict) -> None:
        """Send one message (a JSON object); :class:`WireError` when it is over the frame limit."""
        try:
            data = json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        except (TypeError, ValueError) as exc:
            raise WireError(f"cannot send {type(exc).__name__}: {exc}") from None
        if len(data) > self.max_frame:
            raise WireError(f"a {len(data)}-byte message is over the {self.max_frame}-byte frame limit")
        with self._send_lock:
            self.sock.sendall(_HEADER.pack(len(data)) + data)

    def receive(self) -> dict | None:
        """The next message, or None when the other end closed the connection between frames."""
        header = self._read(_HEADER.size, eof_ok=True)
        if header is None:
            return None
        (size,) = _HEADER.unpack(header)
        if size > self.max_frame:
            raise WireError(f"a frame of {size} bytes announced, over the {self.max_frame}-byte limit")
        data = self._read(size, eof_ok=False)
        try:
            message = json.loads(data)
        except (UnicodeDecodeError, ValueError) as exc:
            raise WireError(f"a frame that is not JSON: {exc}") from None
        if not isinstance(message, dict):
            raise WireError(f"a frame holding a {type(message).__name__}, not an object")
        return message

    def _read(self, size: int, *, eof_ok: bool) -> bytes | None:
        buffer = bytearray(size)
        view = memoryview(buffer)
        got = 0
        while got < size:
            try:
                n = self.sock.recv_into(view[got:], size - got)
            except (ConnectionResetError, BrokenPipeError):
                n = 0
            if n == 0:
                if got == 0 and eof_ok:
                    return None
                raise WireError(f"the connection closed {got} bytes into a {size}-byte read")
            got += n
        return bytes(buffer)

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


# --- values --------------------------------------------------------------------------------------------


def _records() -> dict[str, type]:
    from corral.tools.calls import ToolCall
    from corral.tools.stream import Delta, TokenLogprob, ToolCallDelta

    return {cls.__name__: cls for cls in (ChatResult, Delta, TokenLogprob, ToolCall, ToolCallDelta)}


_RECORDS: dict[str, type] | None = None


def _record_types() -> dict[str, type]:
    global _RECORDS
    if _RECORDS is None:
        _RECORDS = _records()
    return _RECORDS


def encode(value: Any) -> Any:
    """``value`` as plain JSON data (see the module docstring for what is carried)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, list):
        return [encode(v) for v in value]
    if isinstance(value, tuple):
        return {TAG: "tuple", "items": [encode(v) for v in value]}
    if isinstance(value, dict):
        if TAG in value or not all(isinstance(k, str) for k in value):
            return {TAG: "dict", "items": [[encode(k), encode(v)] for k, v in value.items()]}
        return {k: encode(v) for k, v in value.items()}
    if isinstance(value, PurePath):
        return {TAG: "path", "value": str(value)}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {TAG: "bytes", "data": base64.b64encode(bytes(value)).decode("ascii")}
    if attrs.has(type(value)) and type(value).__name__ in _record_types():
        fields = {f.name: encode(getattr(value, f.name)) for f in attrs.fields(type(value))}
        return {TAG: "record", "type": type(value).__name__, "fields": fields}
    kind = type(value).__module__.split(".")[0]
    if kind == "numpy":
        return _encode_numpy(value)
    if kind == "PIL" and hasattr(value, "tobytes") and hasattr(value, "mode"):
        data = base64.b64encode(value.tobytes()).decode("ascii")
        return {TAG: "image", "mode": value.mode, "size": list(value.size), "data": data}
    if isinstance(value, (set, frozenset)):
        return [encode(v) for v in value]
    raise WireError(f"a {type(value).__module__}.{type(value).__qualname__} cannot cross the runner protocol")


def _encode_numpy(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray) and value.dtype.name in _DTYPES:
        data = base64.b64encode(np.ascontiguousarray(value).astype(value.dtype.newbyteorder("<")).tobytes())
        return {TAG: "ndarray", "dtype": value.dtype.name, "shape": list(value.shape), "data": data.decode("ascii")}
    raise WireError(f"a numpy {type(value).__name__} of dtype {getattr(value, 'dtype', '?')} cannot cross "
                    f"the runner protocol")


def decode(data: Any) -> Any:
    """The value :func:`encode` made ``data`` from; :class:`WireError` for an unknown or malformed tag."""
    if isinstance(data, list):
        return [decode(v) for v in data]
    if not isinstance(data, dict):
        return data
    tag = data.get(TAG)
    if tag is None:
        return {k: decode(v) for k, v in data.items()}
    try:
        return _DECODERS[tag](data)
    except KeyError:
        raise WireError(f"unknown value tag {tag!r}") from None
    except WireError:
        raise
    except (TypeError, ValueError) as exc:
        raise WireError(f"a malformed {tag!r} value: {exc}") from None


def _decode_record(data: dict) -> Any:
    cls = _record_types().get(data["type"])
    if cls is None:
        raise WireError(f"unknown record type {data['type']!r}")
    known = {f.name for f in attrs.fields(cls)}
    return cls(**{k: decode(v) for k, v in data["fields"].items() if k in known})


def _decode_ndarray(data: dict) -> Any:
    import numpy as np

    if data["dtype"] not in _DTYPES:
        raise WireError(f"array dtype {data['dtype']!r} is not carried")
    dtype = np.dtype(data["dtype"]).newbyteorder("<")
    array = np.frombuffer(base64.b64decode(data["data"]), dtype=dtype)
    return array.reshape([int(n) for n in data["shape"]]).astype(dtype.newbyteorder("="))


def _decode_image(data: dict) -> Any:
    from PIL import Image

    if data["mode"] not in _MODES:
        raise WireError(f"image mode {data['mode']!r} is not carried")
    width, height = (int(n) for n in data["size"])
    return Image.frombytes(data["mode"], (width, height), base64.b64decode(data["data"]))


def _decode_path(data: dict) -> Any:
    from pathlib import Path

    return Path(str(data["value"]))


_DECODERS: dict[str, Callable[[dict], Any]] = {
    "tuple": lambda d: tuple(decode(v) for v in d["items"]),
    "dict": lambda d: {decode(k): decode(v) for k, v in d["items"]},
    "path": _decode_path,
    "bytes": lambda d: base64.b64decode(d["data"]),
    "record": _decode_record,
    "ndarray": _decode_ndarray,
    "image": _decode_image,
}


# --- errors --------------------------------------------------------------------------------------------


def encode_error(exc: BaseException) -> dict:
    """An exception as data: its class name (and whether it is a Corral error) and its message."""
    data: dict[str, Any] = {"type": type(exc).__name__, "message": str(exc), "corral": isinstance(exc, CorralError)}
    if isinstance(exc, CorralError):
        # A plugin's own error class becomes the nearest core class it derives from.
        data["lineage"] = [c.__name__ for c in type(exc).__mro__ if issubclass(c, CorralError)]
        data["http_status"] = int(getattr(exc, "http_status", 400))
        retry = getattr(exc, "retry_after", None)
        if isinstance(retry, int):
            data["retry_after"] = retry
    return data


def _corral_errors() -> dict[str, type]:
    from corral import errors

    return {name: cls for name, cls in vars(errors).items()
            if isinstance(cls, type) and issubclass(cls, errors.CorralError)}


def decode_error(data: Any, model_name: str) -> Exception:
    """The exception :func:`encode_error` described: the same Corral error class when the core has it
    (a plugin's own subclass becomes the nearest core class), else :class:`corral.errors.RunnerFailed`
    naming ``model_name`` and what the driver raised."""
    if not isinstance(data, dict):
        return RunnerFailed(f"{model_name}: its runner answered with a malformed error")
    name, message = str(data.get("type", "Exception")), str(data.get("message", ""))
    if data.get("corral"):
        core = _corral_errors()
        lineage = data.get("lineage") if isinstance(data.get("lineage"), list) else [name]
        cls = next((core[n] for n in lineage if isinstance(n, str) and n in core), CorralError)
        try:
            error: Exception = cls(message)
        except TypeError:  # a class whose constructor wants more than the message
            error = CorralError(message)
        if isinstance(data.get("retry_after"), int):
            error.retry_after = data["retry_after"]  # type: ignore[attr-defined]
        return error
    return RunnerFailed(f"{model_name}: the driver failed: {name}: {message}")
