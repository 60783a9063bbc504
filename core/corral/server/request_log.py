"""The request log: one JSON line per request in ``CORRAL_HOME/logs/requests.log``, rotated by size.

A line holds the time, the request id (also sent back as ``X-Request-Id``), the client, the key's name, the
method, path and route, the model, the status, the duration (and time to first byte of a streamed answer)
and the prompt and completion tokens. Never the prompt text, unless the server runs with
``--log-prompts``; then the body's prompt fields (``messages``, ``prompt``, ``input``, ``system``, ...) are
added as ``prompt``.

Lines are made on the event loop and handed to a writer thread, so a slow disk never holds the loop; the
writer wakes at most every :data:`BATCH_SECONDS` and writes what came meanwhile at once, so it takes the
interpreter's lock from the loop once per batch rather than once per request. Also here: the
:class:`RequestRecord` the guard middleware fills for every request, and :class:`UsageScan`, which reads
the token counts out of an answer as it passes (OpenAI ``usage``, Anthropic / Responses ``usage``,
Ollama ``prompt_eval_count`` / ``eval_count``), whatever route produced it.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import re
import threading
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("corral.server")

LOG_DIR = "logs"
LOG_FILE = "requests.log"
#: Size at which the log is rotated, and how many old logs are kept (requests.log.1 ... .5).
MAX_BYTES = 10 * 1024 * 1024
BACKUPS = 5
#: Longest a line waits in memory before the writer thread writes it (with the others that came meanwhile).
BATCH_SECONDS = 0.05

#: Body fields that carry prompt text (logged only with --log-prompts).
PROMPT_FIELDS = ("messages", "prompt", "input", "system", "instructions", "query", "documents", "suffix")
PROMPT_LIMIT = 64 * 1024


class RequestRecord:
    """What the guard middleware learns about one request, for the metrics and the log."""

    __slots__ = ("id", "started", "wall", "method", "path", "route", "client", "key", "scope", "model_ref",
                 "model", "status", "first_byte", "ended", "prompt_tokens", "completion_tokens", "bytes_in",
                 "bytes_out", "stream", "denied", "prompt")

    def __init__(self, request_id: str, method: str, path: str, client: Any) -> None:
        self.id = request_id
        self.started = time.perf_counter()
        self.wall = time.time()
        self.method = method
        self.path = path
        self.route: str | None = None
        self.client = client[0] if client else None
        self.key: str | None = None
        self.scope: str | None = None
        self.model_ref: str | None = None
        self.model: str | None = None
        self.status: int | None = None
        self.first_byte: float | None = None
        self.ended: float | None = None
        self.prompt_tokens: int | None = None
        self.completion_tokens: int | None = None
        self.bytes_in = 0
        self.bytes_out = 0
        self.stream = False
        self.denied: str | None = None
        self.prompt: Any = None

    @property
    def duration(self) -> float:
        return (self.ended or time.perf_counter()) - self.started

    @property
    def ttft(self) -> float | None:
        """Seconds to the first byte of a streamed answer (its first token), None for other answers."""
        return self.first_byte - self.started if self.stream and self.first_byte is not None else None

    def line(self) -> dict:
        data = {
            "time": self.wall,  # seconds; the writer thread turns it into ISO 8601
            "id": self.id,
            "client": self.client,
            "key": self.key,
            "method": self.method,
            "path": self.path[:512],
            "route": self.route,
            "model": self.model or (self.model_ref[:200] if isinstance(self.model_ref, str) else None),
            "status": self.status,
            "duration_ms": round(self.duration * 1000, 3),
            "ttft_ms": None if self.ttft is None else round(self.ttft * 1000, 3),
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "stream": self.stream,
        }
        if self.denied:
            data["denied"] = self.denied
        if self.prompt is not None:
            data["prompt"] = self.prompt
        return data


def prompt_fields(body: Any) -> Any:
    """The prompt-carrying fields of a request body, cut to :data:`PROMPT_LIMIT` characters of JSON."""
    if not isinstance(body, dict):
        return None
    picked = {k: body[k] for k in PROMPT_FIELDS if k in body}
    if not picked:
        return None
    text = json.dumps(picked, ensure_ascii=False)
    return picked if len(text) <= PROMPT_LIMIT else {"truncated": text[:PROMPT_LIMIT]}


# --- token counts from answers ----------------------------------------------------------------------

_USAGE = re.compile(rb'"usage"\s*:\s*')
_COUNTS = re.compile(rb'"(prompt_eval_count|eval_count)"\s*:\s*(\d{1,15})')
_DECODER = json.JSONDecoder()
TAIL = 16 * 1024


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


class UsageScan:
    """Reads prompt and completion token counts from an answer's bytes as they are sent.

    ``mode``: ``json`` (one document: its last :data:`TAIL` bytes are read at the end), ``sse`` or
    ``ndjson`` (each event as it passes). A stream that reports no counts is counted in events: every
    event but the last stands for one token, as the server itself counts a driver's pieces.
    """

    __slots__ = ("mode", "tail", "prompt", "completion", "events")

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.tail = b""
        self.prompt: int | None = None
        self.completion: int | None = None
        self.events = 0

    def feed(self, chunk: bytes) -> None:
        if self.mode == "json":
            self.tail = (self.tail + chunk)[-TAIL:] if len(chunk) < TAIL else chunk[-TAIL:]
            return
        if self.mode == "sse":
            self.events += chunk.count(b"data:") - chunk.count(b"data: [DONE]")
        else:
            self.events += chunk.count(b"\n")
        if b'"usage"' in chunk or b'eval_count"' in chunk:
            self._scan(chunk)

    def finish(self) -> tuple[int | None, int | None]:
        if self.mode == "json":
            self._scan(self.tail)
        elif self.completion is None and self.events > 0:
            self.completion = self.events - 1
        return self.prompt, self.completion

    def _scan(self, data: bytes) -> None:
        for match in _USAGE.finditer(data):
            if data[match.start() - 1: match.start()] == b"\\":
                continue  # inside a string
            try:
                value, _ = _DECODER.raw_decode(data[match.end(): match.end() + 4096].decode("utf-8", "replace"))
            except ValueError:
                continue
            if not isinstance(value, dict):
                continue
            prompt = _count(value.get("prompt_tokens", value.get("input_tokens")))
            completion = _count(value.get("completion_tokens", value.get("output_tokens")))
            self.prompt = prompt if prompt is not None else self.prompt
            self.completion = completion if completion is not None else self.completion
        for match in _COUNTS.finditer(data):
            if match.group(1) == b"eval_count":
                self.completion = int(match.group(2))
            else:
                self.prompt = int(match.group(2))


# --- the log file -----------------------------------------------------------------------------------


def iso_time(seconds: float) -> str:
    """``2026-01-31T12:00:00.123Z``"""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{int(seconds % 1 * 1000):03d}Z"

_STOP = object()


class RequestLog:
    """Appends JSON lines to ``directory/requests.log`` from a writer thread; rotates at ``max_bytes``."""

    def __init__(self, directory: Path, *, max_bytes: int = MAX_BYTES, backups: int = BACKUPS,
                 batch_seconds: float = BATCH_SECONDS) -> None:
        self.directory = Path(directory)
        self.path = self.directory / LOG_FILE
        self.max_bytes = max_bytes
        self.backups = backups
        self.batch_seconds = batch_seconds
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._broken = False

    def write(self, line: dict) -> None:
        """Queue one line (never blocks on the disk)."""
        if self._broken:
            return
        stamp = line.get("time")
        if isinstance(stamp, float):
            line["time"] = iso_time(stamp)
        data = (json.dumps(line, ensure_ascii=False, default=str) + "\n").encode("utf-8", "replace")
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="corral-request-log", daemon=True)
                    self._thread.start()
        self._queue.put(data)

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued, then stop the writer thread."""
        thread = self._thread
        if thread is not None:
            self._queue.put(_STOP)
            thread.join(timeout)
            self._thread = None

    def _batch(self) -> tuple[list[bytes], bool]:
        """The lines queued (waiting for the first), and whether :meth:`close` asked to stop."""
        first = self._queue.get()
        if first is _STOP:
            return [], True
        time.sleep(self.batch_seconds)  # let the lines of this moment gather
        lines, stop = [first], False
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return lines, stop
            if item is _STOP:
                stop = True
            else:
                lines.append(item)

    def _run(self) -> None:
        out = None
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            out = open(self.path, "ab")
            size = out.tell()
            while True:
                lines, stop = self._batch()
                for data in lines:
                    if size and size + len(data) > self.max_bytes:
                        out.close()
                        self._rotate()
                        out = open(self.path, "ab")
                        size = 0
                    out.write(data)
                    size += len(data)
                out.flush()
                if stop:
                    return
        except OSError as exc:
            self._broken = True  # stop queueing lines nobody writes
            log.error("the request log %s cannot be written: %s", self.path, exc)
        finally:
            if out is not None:
                out.close()

    def _rotate(self) -> None:
        for n in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{LOG_FILE}.{n}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{LOG_FILE}.{n + 1}"))
        if self.backups > 0:
            os.replace(self.path, self.path.with_name(f"{LOG_FILE}.1"))
        else:
            self.path.unlink(missing_ok=True)
