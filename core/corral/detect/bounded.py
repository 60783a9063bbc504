"""A buffered, byte-counting file reader with a hard cap, for parsing untrusted headers.

Every detector reads through :class:`BoundedReader`, so a lying length field can never make Corral read
(or allocate) more than the reader's cap, and a test can prove how much was read with
:func:`count_reads` (also spelled :func:`counting`).
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
import threading
from pathlib import Path
from typing import Any, BinaryIO, Iterator

from corral.errors import DetectionError, Truncated

#: Default cap on the bytes one reader may pull from a file (GGUF headers with 256k-token vocabularies
#: take a few MB; nothing legitimate comes close).
DEFAULT_CAP = 64 * 1024 * 1024

_CHUNK = 64 * 1024


class ReadCounter:
    """Bytes and read calls done by :class:`BoundedReader` objects while a :func:`count_reads` is open."""

    def __init__(self) -> None:
        self.bytes = 0
        self.reads = 0

    @property
    def bytes_read(self) -> int:
        return self.bytes


_local = threading.local()


@contextlib.contextmanager
def count_reads() -> Iterator[ReadCounter]:
    """Count the bytes every :class:`BoundedReader` in this thread reads inside the ``with`` block."""
    counter = ReadCounter()
    stack = _local.__dict__.setdefault("counters", [])
    stack.append(counter)
    try:
        yield counter
    finally:
        stack.remove(counter)


counting = count_reads


def _charge(n: int) -> None:
    for counter in _local.__dict__.get("counters", ()):
        counter.bytes += n
        counter.reads += 1


class BoundedReader:
    """Read a file forwards through a small buffer, never more than ``cap`` bytes in total.

    ``read`` returns exactly ``n`` bytes or raises :class:`Truncated`; ``skip`` moves past bytes without
    reading them (a seek when they are not buffered yet), so skipped data does not count. It is also
    file-like enough (``read``, ``readline``, ``tell``) for :func:`pickletools.genops`.
    """

    def __init__(self, path: Path, cap: int = DEFAULT_CAP, *, what: str = "header") -> None:
        self.path = Path(path)
        self.cap = cap
        self.what = what
        self._f: BinaryIO = open(self.path, "rb")
        self.size = os.fstat(self._f.fileno()).st_size
        self._buf = b""
        self._pos = 0  # offset of _buf[0] in the file
        self._off = 0  # cursor inside _buf
        self.bytes_read = 0

    # -- context manager ------------------------------------------------------------------------

    def __enter__(self) -> BoundedReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._f.close()

    def _truncated(self, end: int) -> Truncated:
        return Truncated(
            f"{self.path} is truncated ({self.what} needs byte {end}, file has {self.size}); "
            "the download or copy is incomplete, download it again"
        )

    # -- reading --------------------------------------------------------------------------------

    def tell(self) -> int:
        return self._pos + self._off

    @property
    def remaining(self) -> int:
        """Bytes left in the file after the cursor."""
        return self.size - self.tell()

    def _fill(self, n: int) -> None:
        """Make at least ``n`` bytes available after the cursor (fewer only at end of file)."""
        have = len(self._buf) - self._off
        if have >= n:
            return
        want = max(n - have, _CHUNK)
        want = min(want, self.size - (self._pos + len(self._buf)))
        if self.bytes_read + want > self.cap:
            # Read exactly what is needed before giving up: the cap is on real need, not read-ahead.
            want = min(want, max(n - have, 0))
            if self.bytes_read + want > self.cap:
                raise DetectionError(
                    f"{self.path}: {self.what} is larger than Corral's {self.cap // (1024 * 1024)} MiB "
                    "limit for headers; the file is malformed or hostile"
                )
        self._f.seek(self._pos + len(self._buf))
        data = self._f.read(want) if want > 0 else b""
        self.bytes_read += len(data)
        _charge(len(data))
        self._pos += self._off
        self._buf = self._buf[self._off:] + data
        self._off = 0

    def read(self, n: int = -1) -> bytes:
        """Exactly ``n`` bytes (``-1``: up to the cap's worth of the rest of the file)."""
        if n < 0:
            n = min(self.remaining, self.cap - self.bytes_read)
        if n > self.remaining:
            raise self._truncated(self.tell() + n)
        self._fill(n)
        out = self._buf[self._off:self._off + n]
        self._off += n
        return out

    def peek(self, n: int) -> bytes:
        """Up to ``n`` bytes at the cursor, without moving it."""
        self._fill(n)
        return self._buf[self._off:self._off + n]

    def readline(self) -> bytes:
        """A line ending in ``\\n`` (for pickle's text opcodes), at most 64 KiB."""
        out = b""
        while len(out) < 65536:
            chunk = self.peek(256)
            if not chunk:
                return out
            i = chunk.find(b"\n")
            if i >= 0:
                return out + self.read(i + 1)
            out += self.read(len(chunk))
        raise DetectionError(f"{self.path}: a text field in the {self.what} is longer than 64 KiB")

    def skip(self, n: int) -> None:
        """Move ``n`` bytes forward without reading them."""
        if n > self.remaining:
            raise self._truncated(self.tell() + n)
        if self._off + n <= len(self._buf):
            self._off += n
        else:
            self._pos = self.tell() + n
            self._buf, self._off = b"", 0

    def read_exact(self, n: int) -> bytes:
        """Exactly ``n`` bytes; :class:`Truncated` when the file ends first (same as :meth:`read`)."""
        if n < 0:
            raise ValueError("read_exact needs a length")
        return self.read(n)

    def unpack(self, fmt: struct.Struct) -> tuple:
        """Read ``fmt.size`` bytes and unpack them with ``fmt``."""
        return fmt.unpack(self.read(fmt.size))

    def skip_prefixed(self, n: int, length: struct.Struct, max_len: int) -> None:
        """Skip ``n`` items that are each a ``length``-encoded size followed by that many bytes.

        Only the size fields are read (strings in a 256k-token vocabulary are stepped over, not kept);
        a size over ``max_len`` raises :class:`DetectionError`. The hot path of GGUF detection, so it
        walks the buffer directly instead of making several Python calls per item.
        """
        size = length.size
        unpack_from = length.unpack_from
        # Every item takes at least its size field: refuse a count that the file or the cap cannot hold
        # before walking it (millions of empty strings in a sparse file took seconds to reach the cap).
        if n * size > self.remaining:
            raise self._truncated(self.tell() + n * size)
        if self.bytes_read - (len(self._buf) - self._off) + n * size > self.cap:
            raise DetectionError(
                f"{self.path}: {self.what} declares {n} length-prefixed items, more than Corral's "
                f"{self.cap // (1024 * 1024)} MiB limit for headers can hold; the file is malformed or hostile"
            )
        while n:
            self._fill(size)
            buf, off, end = self._buf, self._off, len(self._buf)
            if end - off < size:
                raise self._truncated(self.tell() + size)
            while n and off + size <= end:
                (k,) = unpack_from(buf, off)
                if k > max_len:
                    raise DetectionError(
                        f"{self.path}: a length at byte {self._pos + off} of the {self.what} is {k} (at most "
                        f"{max_len} is plausible); the file is malformed or hostile"
                    )
                off += size + k
                n -= 1
            # ``off`` may now point past the buffer (a string that straddles it): move the cursor there.
            target = self._pos + off
            if target > self.size:
                raise self._truncated(target)
            if off <= end:
                self._off = off
            else:
                self._pos, self._buf, self._off = target, b"", 0


#: The largest JSON file (config.json and the like) detection reads.
MAX_CONFIG = 4 * 1024 * 1024


def read_json(path: Path, limit: int = MAX_CONFIG) -> Any:
    """A small JSON file, read through a capped reader; errors name the file."""
    with BoundedReader(path, cap=limit, what=path.name) as r:
        if r.size > limit:
            raise DetectionError(f"{path}: {r.size} bytes is too large for a {path.name} (limit {limit})")
        raw = r.read(r.size)
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise DetectionError(f"{path}: not valid JSON ({exc}); fix or re-download the file") from None
    except RecursionError:  # json recurses per nesting level: "[[[[..." a megabyte deep overflows it
        raise DetectionError(f"{path}: JSON nested too deeply to be a real config; fix or re-download the file") from None
