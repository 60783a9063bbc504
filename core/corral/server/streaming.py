"""Streaming a driver's generator to an HTTP client.

The generator runs in one thread of its own from first piece to last (backends need not be safe to
resume from different threads) and hands pieces to the event loop. The model's turn is released only
when the generator has finished or been closed, so a streamed answer holds its model until it ends; a
client that disconnects stops the generation after the current piece.
"""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any, AsyncIterator, Callable, Iterator

from corral.errors import CorralError
from corral.runtime.queue import Turn

_END = object()


class PieceStream:
    """Runs ``produce()`` (an iterator of text pieces) in a thread while ``turn`` is held."""

    def __init__(self, turn: Turn, produce: Callable[[], Iterator[Any]], name: str = "corral-stream") -> None:
        self._turn = turn
        self._produce = produce
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue = asyncio.Queue()
        self._stop = threading.Event()
        self.count = 0
        self._thread = threading.Thread(target=self._pump, name=name, daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> None:
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)
        except RuntimeError:  # the event loop is gone (server stopping)
            self._stop.set()

    def _pump(self) -> None:
        try:
            iterator = iter(self._produce())
            try:
                for piece in iterator:
                    if self._stop.is_set():
                        break
                    if piece:  # text, or a corral.tools.Delta
                        self._put(piece if not isinstance(piece, (bytes, int, float)) else str(piece))
            finally:
                close = getattr(iterator, "close", None)
                if close is not None:
                    close()
            self._put(_END)
        except BaseException as exc:  # delivered to the request, which answers it
            self._put(exc)
        finally:
            self._turn.release()

    async def next(self) -> Any:
        """The next piece (text or a Delta), or None at the end; re-raises what the generator raised."""
        item = await self._queue.get()
        if item is _END:
            self._queue.put_nowait(_END)  # later calls keep seeing the end
            return None
        if isinstance(item, BaseException):
            raise item
        self.count += 1
        return item

    def stop(self) -> None:
        """Ask the generator to stop after its current piece (client gone)."""
        self._stop.set()


def sse(data: Any) -> str:
    """One server-sent event carrying ``data`` as JSON (or the literal ``[DONE]``)."""
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return f"data: {payload}\n\n"


async def sse_pieces(
    stream: PieceStream,
    first: Any,
    chunk: Callable[[Any], dict],
    last: Callable[[int], list[dict]],
) -> AsyncIterator[str]:
    """SSE events: ``chunk(piece)`` per piece, then ``last(count)`` events and ``[DONE]``.

    An error in the middle of a stream arrives as an ``{"error": ...}`` event (the status line is gone).
    """
    from corral.server.client import error_code
    from corral.server.responses import error_body, log

    try:
        piece = first
        while piece is not None:
            yield sse(chunk(piece))
            piece = await stream.next()
        for event in last(stream.count):
            yield sse(event)
        yield sse("[DONE]")
    except CorralError as exc:
        yield sse(error_body(str(exc), exc.http_status, error_code(type(exc))))
    except Exception as exc:
        log.exception("stream failed")
        yield sse(error_body(f"internal error: {type(exc).__name__}: {exc}", 500, "internal_error"))
    finally:
        stream.stop()
