"""Resumable, verified file transfers.

Each file is fetched into ``TARGET.part`` beside its final place, with a small ``TARGET.part.json`` that
says which remote file the partial bytes belong to. A later run (after a dropped connection, Ctrl-C, or a
killed process) asks the hub for the rest with an HTTP Range request instead of starting over; it starts
over only when the remote file changed or the server ignores ranges. The finished file is checked
(sha256 where the hub lists it, size otherwise) and only then moved to ``TARGET``.

Bytes are received on the calling thread and written and hashed on a second one, so hashing overlaps the
network (hashlib and file writes release the GIL).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import queue
import shutil
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from attrs import frozen

from corral.ext.source import Source, open_url_range
from corral.errors import Conflict
from corral.pull.errors import DownloadError, IntegrityError, NoSpace, Paused
from corral.records import Transfer

#: Attempts in a row that bring no new byte before a pull gives up (the partial data stays).
MAX_STALLED_ATTEMPTS = 4
#: Seconds to wait before each retry that follows an attempt without progress.
BACKOFF = (0.2, 0.5, 1.0, 2.0)
#: Free space a pull leaves on the disk beyond what it needs.
DISK_RESERVE = 64 * 1024 * 1024
_HASH_BLOCK = 8 * 1024 * 1024
_RESET = object()


def part_path(target: Path) -> Path:
    return target.with_name(target.name + ".part")


def note_path(target: Path) -> Path:
    return target.with_name(target.name + ".part.json")


def human_bytes(n: int | None) -> str:
    if n is None:
        return "an unknown size"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"


class Meter:
    """What a pull reports while it runs. The CLI draws it with rich; this base class ignores it all."""

    def begin(self, files: int, total: int | None, have: int) -> None:
        """A pull of ``files`` files, ``total`` bytes in all, ``have`` of them already on disk."""

    def start_file(self, name: str, size: int | None, have: int) -> None:
        """Fetching ``name`` starts (or resumes, when ``have`` > 0)."""

    def advance(self, nbytes: int) -> None:
        """``nbytes`` more arrived."""

    def rewind(self, nbytes: int) -> None:
        """``nbytes`` counted before were dropped (a server that ignored the range sends it all again)."""

    def end_file(self, name: str, fetched: int, reused: bool) -> None:
        """``name`` is verified and in place; ``fetched`` bytes came from the hub this run."""

    def note(self, text: str) -> None:
        """A line worth telling the user (a retry, a restart with its cause)."""

    def end(self) -> None:
        """The pull is over (done, failed or paused)."""


class CallbackMeter(Meter):
    """A :class:`Meter` that feeds a :data:`corral.driver.Progress` callback ``(done, total, label)``."""

    def __init__(self, progress: Callable[[int, int | None, str], None] | None) -> None:
        self.progress = progress
        self.done = 0
        self.total: int | None = None
        self.label = ""

    def begin(self, files: int, total: int | None, have: int) -> None:
        self.total, self.done = total, have

    def start_file(self, name: str, size: int | None, have: int) -> None:
        self.label = name

    def advance(self, nbytes: int) -> None:
        self.done += nbytes
        if self.progress:
            self.progress(self.done, self.total, self.label)

    def rewind(self, nbytes: int) -> None:
        self.done -= nbytes


@frozen
class Outcome:
    """What happened to one file: fetched bytes this run, where it started from, whether it was reused."""

    transfer: Transfer
    fetched: int = 0
    resumed_from: int = 0
    reused: bool = False


# --- the partial file's identity ---------------------------------------------------------------------


def _identity(transfer: Transfer, version: str | None) -> dict[str, Any]:
    f = transfer.file
    return {"name": f.name, "size": f.size, "sha256": f.sha256, "version": None if f.sha256 else version}


def resumable_bytes(transfer: Transfer, version: str | None) -> int:
    """How many bytes of ``transfer`` a previous run left that this one can keep."""
    part = part_path(transfer.target)
    try:
        have = part.stat().st_size
        note = json.loads(note_path(transfer.target).read_text())
    except (OSError, ValueError):
        return 0
    size = transfer.file.size
    if note != _identity(transfer, version) or (size is not None and have > size):
        return 0
    return have


def file_sha256(path: Path, upto: int | None = None) -> "hashlib._Hash":
    """A sha256 object fed with the first ``upto`` bytes of ``path`` (all of it by default)."""
    h = hashlib.sha256()
    left = upto
    with open(path, "rb") as f:
        while left is None or left > 0:
            block = f.read(_HASH_BLOCK if left is None else min(_HASH_BLOCK, left))
            if not block:
                break
            h.update(block)
            if left is not None:
                left -= len(block)
    return h


def in_place(transfer: Transfer) -> bool:
    """Is the right file already at ``target``? Content-addressed cache files need only their size."""
    target, f = transfer.target, transfer.file
    try:
        size = target.stat().st_size
    except OSError:
        return False
    if f.size is not None and size != f.size:
        return False
    if transfer.cached or not f.sha256:
        return True
    return file_sha256(target).hexdigest() == f.sha256.lower()


# --- free space ----------------------------------------------------------------------------------------


def _existing_dir(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.is_dir():
            return candidate
    return Path(path.anchor) if path.anchor else Path.cwd()


def check_space(transfers: Sequence[Transfer], version: str | None) -> None:
    """Refuse, with numbers, a pull whose remaining bytes do not fit on the disks they go to."""
    needed: dict[int, tuple[Path, int]] = {}
    for t in transfers:
        if t.url is None or t.file.size is None or in_place_quick(t):
            continue
        where = _existing_dir(t.target.parent)
        dev = where.stat().st_dev
        rest = t.file.size - resumable_bytes(t, version)
        shown, total = needed.get(dev, (where, 0))
        needed[dev] = (shown, total + rest)
    for where, total in needed.values():
        free = shutil.disk_usage(where).free
        if total + DISK_RESERVE > free:
            raise NoSpace(
                f"not enough disk space in {where}: the pull still needs {human_bytes(total)} and "
                f"{human_bytes(free)} is free; free some space or pass --dest on another disk"
            )


def in_place_quick(transfer: Transfer) -> bool:
    """A size-only look at ``target`` (the disk check must not hash whole files)."""
    try:
        size = transfer.target.stat().st_size
    except OSError:
        return False
    return transfer.file.size is None or size == transfer.file.size


# --- one file --------------------------------------------------------------------------------------------


class _Writer(threading.Thread):
    """Writes and hashes chunks in order on its own thread; a failure is kept for the receiving side."""

    def __init__(self, fileobj, hasher) -> None:
        super().__init__(daemon=True, name="corral-pull-writer")
        self.fileobj = fileobj
        self.hasher = hasher
        self.queue: queue.Queue = queue.Queue(maxsize=64)
        self.error: BaseException | None = None

    def run(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                return
            if self.error is not None:
                continue  # keep draining so the receiving side never blocks
            try:
                if item is _RESET:
                    self.fileobj.seek(0)
                    self.fileobj.truncate()
                    if self.hasher is not None:
                        self.hasher = hashlib.sha256()
                else:
                    self.fileobj.write(item)
                    if self.hasher is not None:
                        self.hasher.update(item)
            except BaseException as exc:  # disk full, I/O error: reported by put()/close()
                self.error = exc

    def put(self, item) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put(item)

    def close(self) -> None:
        """Write everything queued, then stop (also on Ctrl-C: queued bytes are good bytes)."""
        self.queue.put(None)
        self.join()
        self.fileobj.flush()


@contextlib.contextmanager
def _locked_part(part: Path) -> Iterator[Any]:
    """The part file opened for update, locked so two pulls never write the same file."""
    part.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(part, os.O_RDWR | os.O_CREAT, 0o644)
    fileobj = os.fdopen(fd, "r+b", buffering=0)
    try:
        try:
            import fcntl

            fcntl.flock(fileobj.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # pragma: no cover - Windows: no advisory lock, one pull at a time
            pass
        except OSError:
            raise Conflict(f"another corral pull is downloading {part.name[: -len('.part')]} right now") from None
        yield fileobj
    finally:
        fileobj.close()


def fetch_one(source: Source, transfer: Transfer, meter: Meter, version: str | None) -> Outcome:
    """Bring ``transfer.target`` into place: reuse it, resume its partial data, or fetch it."""
    f, target = transfer.file, transfer.target
    if in_place(transfer):
        return Outcome(transfer, reused=True)
    if transfer.url is None:
        raise DownloadError(f"{f.name} is not at {target} and the hub gave no address to fetch it from")
    part, note = part_path(target), note_path(target)
    have = resumable_bytes(transfer, version)
    with _locked_part(part) as fileobj:
        if have == 0:
            if os.fstat(fileobj.fileno()).st_size:
                meter.note(f"{f.name}: the partial data left before belongs to another version; starting over")
            fileobj.truncate(0)
            note.write_text(json.dumps(_identity(transfer, version)))
        fileobj.seek(have)
        hasher = None
        if f.sha256:
            hasher = file_sha256(part, have) if have else hashlib.sha256()
        meter.start_file(f.name, f.size, have)
        writer = _Writer(fileobj, hasher)
        writer.start()
        try:
            offset, fetched = _receive(source, transfer, writer, meter, have)
        except BaseException:
            writer.close()
            if writer.error is not None:  # the disk failed, not the network
                raise DownloadError(f"cannot write {part}: {writer.error}") from None
            raise
        writer.close()
        if writer.error is not None:
            raise DownloadError(f"cannot write {part}: {writer.error}")
        digest = writer.hasher.hexdigest() if writer.hasher is not None else None
    if f.size is not None and offset != f.size:
        raise DownloadError(f"{f.name}: got {offset} bytes, the hub lists {f.size}; run again to resume")
    if digest is not None and digest != f.sha256.lower():  # type: ignore[union-attr]
        part.unlink(missing_ok=True)
        note.unlink(missing_ok=True)
        raise IntegrityError(
            f"{f.name}: sha256 {digest} does not match the hub's {f.sha256}; the download was discarded "
            f"and nothing was added. Run again to retry; if it fails again the hub's copy is damaged"
        )
    os.replace(part, target)
    note.unlink(missing_ok=True)
    return Outcome(transfer, fetched=fetched, resumed_from=have)


def _receive(source: Source, transfer: Transfer, writer: _Writer, meter: Meter, offset: int) -> tuple[int, int]:
    """Stream the rest of the file into ``writer``, resuming after dropped connections.

    Returns the final offset and how many bytes came over the network.
    """
    f, size = transfer.file, transfer.file.size
    stalled, mark, fetched = 0, offset, 0
    while size is None or offset < size:
        try:
            with source.open_range(transfer.url, start=offset, headers=transfer.headers) as (start, chunks):  # type: ignore[arg-type]
                if start != offset:
                    if start != 0:
                        raise DownloadError(f"{f.name}: the hub answered from byte {start}, not {offset}")
                    meter.note(f"{f.name}: the server ignored the resume request; fetching it whole")
                    writer.put(_RESET)
                    meter.rewind(offset)
                    offset = mark = 0
                for chunk in chunks:
                    if size is not None and offset + len(chunk) > size:
                        raise IntegrityError(f"{f.name}: the hub sent more than the {size} bytes it lists")
                    writer.put(chunk)
                    offset += len(chunk)
                    fetched += len(chunk)
                    meter.advance(len(chunk))
            if size is None:
                break
            if offset < size:
                raise ConnectionError("the connection closed before the end of the file")
        except (ConnectionError, TimeoutError) as exc:
            stalled = 0 if offset > mark else stalled + 1
            mark = offset
            if stalled >= MAX_STALLED_ATTEMPTS:
                raise DownloadError(
                    f"{f.name}: the connection keeps failing ({exc}) at {offset} of {human_bytes(size)}; "
                    f"the bytes so far are kept: run the same command again to resume"
                ) from None
            meter.note(f"{f.name}: {exc}; resuming at byte {offset}")
            if stalled:
                time.sleep(BACKOFF[min(stalled, len(BACKOFF)) - 1])
    return offset, fetched


# --- many files ------------------------------------------------------------------------------------------


def fetch_all(source: Source, transfers: Sequence[Transfer], meter: Meter, version: str | None) -> list[Outcome]:
    """Fetch every transfer in order; Ctrl-C becomes :class:`Paused` with what is kept for next time."""
    sizes = [t.file.size for t in transfers]
    total = None if any(s is None for s in sizes) else sum(sizes)  # type: ignore[arg-type]
    have = sum(
        (t.file.size or 0) if in_place_quick(t) else resumable_bytes(t, version) for t in transfers
    )
    meter.begin(len(transfers), total, have)
    outcomes: list[Outcome] = []
    current: Transfer | None = None
    try:
        for transfer in transfers:
            current = transfer
            outcome = fetch_one(source, transfer, meter, version)
            outcomes.append(outcome)
            meter.end_file(transfer.file.name, outcome.fetched, outcome.reused)
    except KeyboardInterrupt:
        kept = part_path(current.target) if current is not None else None
        where = ""
        if kept is not None and kept.exists():
            where = f"; {current.file.name} has {human_bytes(kept.stat().st_size)} of {human_bytes(current.file.size)} in {kept}"  # type: ignore[union-attr]
        raise Paused(
            f"paused after {len(outcomes)} of {len(transfers)} files{where}. "
            f"Run the same command again to resume"
        ) from None
    finally:
        meter.end()
    return outcomes
