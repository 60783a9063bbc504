"""PyTorch pickle checkpoints (.bin, .pth, .pt, .ckpt): scan the opcodes, never unpickle.

A pickle runs code by importing a callable (GLOBAL, INST, STACK_GLOBAL opcodes) and calling it (REDUCE,
BUILD, OBJ, NEWOBJ). So the scanner walks the opcode stream with :func:`pickletools.genops`, resolves
every import, and accepts only the globals that torch's own ``weights_only`` loader accepts (a tight
subset of them). Corral itself never calls ``pickle.load`` on a user file; drivers load allow-listed
checkpoints with ``torch.load(weights_only=True)``.

Both containers torch writes are read: the zip archive of torch >= 1.6 (``<name>/data.pkl`` plus one
member per storage) and the legacy stream (magic number, protocol, system info, the state dict, storage
keys, then raw storage bytes). Every length is bounded before it is read.
"""

from __future__ import annotations

import io
import pickletools
import re
import struct
import zipfile
import zlib
from collections import Counter
from pathlib import Path

import attrs
from attrs import frozen

from corral.detect.bounded import BoundedReader
from corral.detect.tensors import classify
from corral.errors import DetectionError, UnsafeFile
from corral.records import Detection, Format

#: Largest pickle stream Corral scans (state-dict pickles hold names and shapes, not weights: a 70B
#: model's data.pkl is a few MB).
MAX_PICKLE = 64 * 1024 * 1024
#: Zip archives with more members, or a bigger central directory, are refused before zipfile reads them.
MAX_MEMBERS = 200_000
MAX_CENTRAL_DIR = 64 * 1024 * 1024
MAX_PICKLE_MEMBERS = 16
#: Keys kept for classification; more only repeat the same patterns.
MAX_KEYS = 200_000
#: The first pickle of torch's legacy format is this magic number.
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C

_STORAGE_DTYPES = {
    "Float": "float32", "Half": "float16", "BFloat16": "bfloat16", "Double": "float64", "Long": "int64",
    "Int": "int32", "Short": "int16", "Char": "int8", "Byte": "uint8", "Bool": "bool",
    "ComplexFloat": "complex64", "ComplexDouble": "complex128",
    "QInt8": None, "QUInt8": None, "QInt32": None, "QUInt4x2": None, "QUInt2x4": None,
}
_ITEMSIZE = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8, "int64": 8, "int32": 4, "int16": 2,
             "int8": 1, "uint8": 1, "bool": 1, "complex64": 8, "complex128": 16}
_TORCH_DTYPES = (
    "float16 float32 float64 bfloat16 half float double complex32 complex64 complex128 cfloat cdouble "
    "int8 int16 int32 int64 uint8 uint16 uint32 uint64 short int long bool qint8 quint8 qint32 quint4x2 "
    "quint2x4 float8_e4m3fn float8_e5m2 float8_e4m3fnuz float8_e5m2fnuz float8_e8m0fnu"
).split()

#: The globals torch's ``weights_only`` unpickler allows that plain state dicts need; nothing else.
SAFE_GLOBALS = frozenset(
    {
        "collections.OrderedDict",
        "collections.Counter",
        "torch._utils._rebuild_tensor",
        "torch._utils._rebuild_tensor_v2",
        "torch._utils._rebuild_tensor_v3",
        "torch._utils._rebuild_parameter",
        "torch._utils._rebuild_parameter_with_state",
        "torch._tensor._rebuild_from_type_v2",
        "torch.nn.parameter.Parameter",
        "torch.storage.UntypedStorage",
        "torch.storage.TypedStorage",
        "torch.Size",
        "torch.device",
        "torch.Tensor",
        # protocol <= 2 pickles bytes through codecs.encode; torch allows it, it only converts data.
        "_codecs.encode",
        "builtins.set",
        "builtins.bytearray",
        "builtins.complex",
        # the same builtins as a protocol-2 pickle spells them for Python 2 (fix_imports).
        "__builtin__.set",
        "__builtin__.bytearray",
        "__builtin__.complex",
    }
    | {f"{mod}.{kind}{suffix}" for mod in ("torch", "torch.cuda") for kind in _STORAGE_DTYPES
       for suffix in ("Storage", "Tensor")}
    | {f"torch.{dtype}" for dtype in _TORCH_DTYPES}
)

_STRING_OPS = frozenset({"UNICODE", "SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "STRING", "BINSTRING",
                         "SHORT_BINSTRING"})
_PUT_OPS = frozenset({"PUT", "BINPUT", "LONG_BINPUT"})
_GET_OPS = frozenset({"GET", "BINGET", "LONG_BINGET"})
_NO_STACK_OPS = frozenset({"PROTO", "FRAME", "STOP"})
_EXT_OPS = frozenset({"EXT1", "EXT2", "EXT4"})
_KEY = re.compile(r"^[\w.\-/:]{1,300}$")
_UNRESOLVED = "an import the scanner cannot resolve (STACK_GLOBAL on computed names)"


@frozen
class PickleScan:
    """What the opcode scan of one checkpoint found."""

    path: Path
    container: str  # "zip" | "legacy" | "pickle"
    imports: tuple[str, ...]
    bad_imports: tuple[str, ...]
    keys: tuple[str, ...]
    dtypes: dict[str, int]
    storage_bytes: int | None

    @property
    def unsafe(self) -> str | None:
        """Why loading this file could run code, or None."""
        if not self.bad_imports:
            return None
        shown = list(self.bad_imports[:8])
        if len(self.bad_imports) > 8:
            shown.append(f"and {len(self.bad_imports) - 8} more")
        return f"imports {', '.join(shown)}, which could run code when loaded"

    def unsafe_message(self) -> str:
        """The one-line refusal shown to the user (the text of :class:`UnsafeFile`)."""
        return (
            f"{self.path} {self.unsafe}; Corral never unpickles it. Use a safetensors copy, or pass "
            "--allow-unsafe to record it anyway (it is only ever loaded with torch's weights_only loader)"
        )


class _Scanner:
    """Follows just enough of the pickle machine to name every import."""

    def __init__(self) -> None:
        self.stack: list = []  # str, ("global", name) or None; only the top entries ever matter
        self.memo: dict[int, object] = {}
        self.imports: list[str] = []
        self.bad: list[str] = []
        self.keys: dict[str, None] = {}
        self.dtypes: Counter[str] = Counter()
        self.first_long: int | None = None

    def _import(self, name: str) -> None:
        if name not in self.imports:
            self.imports.append(name)
        if name not in SAFE_GLOBALS and name not in self.bad:
            self.bad.append(name)
        self._count_storage(name)

    def _count_storage(self, name: str) -> None:
        m = re.fullmatch(r"torch\.(?:cuda\.)?(\w+)Storage", name)
        if m and _STORAGE_DTYPES.get(m.group(1)):
            self.dtypes[_STORAGE_DTYPES[m.group(1)]] += 1

    def _push(self, value: object) -> None:
        self.stack.append(value)
        if len(self.stack) > 64:
            del self.stack[:-8]

    def feed(self, source) -> None:
        """Scan one pickle (up to its STOP) from a file-like ``source``."""
        for op, arg, _pos in pickletools.genops(source):
            name = op.name
            if name in _STRING_OPS:
                self._push(arg)
                if len(self.keys) < MAX_KEYS and isinstance(arg, str) and _KEY.match(arg):
                    self.keys[arg] = None
            elif name in _PUT_OPS:
                self.memo[arg] = self.stack[-1] if self.stack else None
            elif name == "MEMOIZE":
                self.memo[len(self.memo)] = self.stack[-1] if self.stack else None
            elif name in _GET_OPS:
                value = self.memo.get(arg)
                if isinstance(value, tuple):
                    self._count_storage(value[1])
                self._push(value)
            elif name in ("GLOBAL", "INST"):
                module, _, attr = str(arg).partition(" ")
                self._import(f"{module}.{attr}")
                self._push(("global", f"{module}.{attr}") if name == "GLOBAL" else None)
            elif name == "STACK_GLOBAL":
                attr = self.stack.pop() if self.stack else None
                module = self.stack.pop() if self.stack else None
                if isinstance(module, str) and isinstance(attr, str):
                    self._import(f"{module}.{attr}")
                    self._push(("global", f"{module}.{attr}"))
                else:
                    if _UNRESOLVED not in self.bad:
                        self.bad.append(_UNRESOLVED)
                    self._push(None)
            elif name in _EXT_OPS:
                # The copyreg extension registry maps numbers to arbitrary callables.
                self.bad.append(f"extension-registry code {arg} ({name})")
                self._push(None)
            elif name in ("LONG1", "LONG4") and self.first_long is None:
                self.first_long = arg
                self._push(None)
            elif name not in _NO_STACK_OPS:
                self._push(None)


def _wrap(path: Path, exc: Exception) -> DetectionError:
    if isinstance(exc, DetectionError):
        return exc
    return DetectionError(f"{path}: not a valid PyTorch checkpoint (pickle stream unreadable: {exc})")


def _check_zip_directory(path: Path) -> None:
    """Refuse zips whose end-of-central-directory declares absurd counts, before zipfile trusts them."""
    with BoundedReader(path, cap=70_000, what="zip directory") as r:
        size = r.size
        tail_len = min(size, 65_557)  # EOCD (22 bytes) + the longest comment
        r.skip(size - tail_len)
        tail = r.read(tail_len)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or at + 22 > len(tail):
        raise DetectionError(f"{path}: a zip archive without its central directory; the file is truncated")
    entries, cd_size = struct.unpack("<xxxxxxxxxxHIxxxxxx", tail[at:at + 22])[0:2]
    if entries == 0xFFFF or cd_size == 0xFFFFFFFF:
        loc = at - 20  # zip64: the locator sits right before the EOCD and points at the zip64 EOCD
        if loc < 0 or tail[loc:loc + 4] != b"PK\x06\x07":
            raise DetectionError(f"{path}: a damaged zip64 archive; the file is corrupt")
        (z64,) = struct.unpack("<Q", tail[loc + 8:loc + 16])
        if z64 + 56 > size:
            raise DetectionError(f"{path}: zip64 directory offset {z64} is past the end of the file")
        with BoundedReader(path, cap=56, what="zip64 directory") as r:
            r.skip(z64)
            rec = r.read(56)
        if rec[:4] != b"PK\x06\x06":
            raise DetectionError(f"{path}: a damaged zip64 archive; the file is corrupt")
        entries, cd_size = struct.unpack("<Q", rec[32:40])[0], struct.unpack("<Q", rec[40:48])[0]
    if entries > MAX_MEMBERS or cd_size > MAX_CENTRAL_DIR or cd_size > size:
        raise DetectionError(
            f"{path}: zip archive declares {entries} members in a {cd_size}-byte directory "
            f"(limits {MAX_MEMBERS} and {MAX_CENTRAL_DIR}); the file is corrupt or hostile")


def _scan_zip(path: Path, scanner: _Scanner) -> int | None:
    _check_zip_directory(path)
    with zipfile.ZipFile(path) as z:
        infos = z.infolist()
        pickles = [i for i in infos if i.filename.endswith(".pkl")][:MAX_PICKLE_MEMBERS]
        if not any(i.filename.endswith("data.pkl") for i in pickles):
            raise DetectionError(f"{path}: a zip archive but not a PyTorch checkpoint (no data.pkl inside)")
        for info in pickles:
            if info.file_size > MAX_PICKLE or info.compress_size > MAX_PICKLE:
                raise DetectionError(
                    f"{path}: {info.filename} declares {max(info.file_size, info.compress_size)} bytes "
                    f"(limit {MAX_PICKLE}); the file is corrupt or hostile")
            with z.open(info) as member:
                # Never trust the declared size: read at most the limit (a deflate bomb stops here).
                data = member.read(MAX_PICKLE + 1)
            if len(data) > MAX_PICKLE:
                raise DetectionError(f"{path}: {info.filename} is larger than {MAX_PICKLE} bytes")
            scanner.feed(io.BytesIO(data))
        storage = [i.file_size for i in infos if re.search(r"(^|/)data/\d+$", i.filename)]
        return sum(storage) if storage else None


def _scan_stream(path: Path, scanner: _Scanner) -> str:
    with BoundedReader(path, cap=MAX_PICKLE, what="pickle stream") as r:
        scanner.feed(r)
        if scanner.first_long != LEGACY_MAGIC:
            return "pickle"
        # torch's legacy layout: protocol version, system info, the state dict, the storage keys.
        for _ in range(4):
            scanner.feed(r)
    return "legacy"


def scan_pickle(path: Path) -> PickleScan:
    """Scan a PyTorch checkpoint's pickle opcodes without unpickling anything.

    :raises DetectionError: not a pickle or torch zip, or one whose sizes exceed the scanner's limits.
    """
    path = Path(path)
    scanner = _Scanner()
    storage_bytes = None
    try:
        with BoundedReader(path, cap=4, what="file header") as r:
            magic = r.read(min(4, r.size))
        if magic == b"PK\x03\x04":
            container = "zip"
            storage_bytes = _scan_zip(path, scanner)
        else:
            container = _scan_stream(path, scanner)
    except (ValueError, EOFError, struct.error, OverflowError, zipfile.BadZipFile, zlib.error,
            NotImplementedError, RuntimeError, OSError, DetectionError) as exc:
        raise _wrap(path, exc) from None
    return PickleScan(path, container, tuple(scanner.imports), tuple(scanner.bad), tuple(scanner.keys),
                      dict(scanner.dtypes), storage_bytes)


def require_safe(scan: PickleScan, allow_unsafe: bool) -> None:
    """Raise :class:`UnsafeFile` for an unsafe scan unless the user allowed it."""
    if scan.unsafe and not allow_unsafe:
        raise UnsafeFile(scan.unsafe_message())


def detect_pickle(path: Path, *, allow_unsafe: bool = False) -> Detection:
    """Detect a PyTorch pickle checkpoint by its opcodes and keys.

    :param allow_unsafe: return a detection with ``unsafe`` set instead of raising for a checkpoint
        that imports anything outside the allow-list.
    :raises UnsafeFile: the checkpoint imports non-allow-listed globals (and ``allow_unsafe`` is False).
    :raises DetectionError: not a readable pickle / torch zip.
    """
    path = Path(path)
    scan = scan_pickle(path)
    require_safe(scan, allow_unsafe)
    shapes = {k: None for k in scan.keys}
    verdict = classify(shapes, where="checkpoint keys")
    facts = verdict.facts
    extra = dict(facts.extra)
    extra["container"] = scan.container
    extra.pop("tensor_count", None)  # counts every string in the pickle, not tensors
    dtype = max(scan.dtypes, key=scan.dtypes.get) if scan.dtypes else None
    params = None
    if scan.storage_bytes is not None and len(scan.dtypes) == 1 and dtype in _ITEMSIZE:
        # One storage dtype: the storages' bytes give the element count exactly (shared views aside).
        params = scan.storage_bytes // _ITEMSIZE[dtype]
    facts = attrs.evolve(facts, dtype=dtype, parameters=params, extra=extra)
    container = {"zip": "torch zip archive", "legacy": "legacy torch.save stream", "pickle": "raw pickle"}
    reasons = [f"{container[scan.container]}: opcodes scanned, {len(scan.imports)} imports "
               + ("all allow-listed" if not scan.unsafe else "not all allow-listed")]
    reasons += verdict.reasons
    if scan.unsafe:
        reasons.append(f"unsafe: {scan.unsafe}; recorded because --allow-unsafe was given")
    return Detection(
        path=path,
        kind=verdict.kind,
        format=Format.PYTORCH_PICKLE,
        category=verdict.category,
        component=verdict.component,
        confidence=min(verdict.confidence, 0.8),
        reasons=tuple(reasons),
        facts=facts,
        paths=(path,),
        size=path.stat().st_size,
        unsafe=scan.unsafe,
    )
