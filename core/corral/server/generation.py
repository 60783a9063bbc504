"""What every text protocol surface shares: the driver's field check, a streamed generation held in its
model's turn, and the blocks an answer is made of (thought, text, tool calls) for surfaces that send
them as typed items (Anthropic's content blocks, the Responses API's output items).

Every surface reads its request into OpenAI-shaped messages and parameters (what drivers take), runs it
through :class:`corral.server.service.Service` (load rules, queue, 503, watchdog), and writes the answer in
its own shapes.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Iterator, Sequence

from attrs import define, field

from corral.errors import InvalidRequest
from corral.records import ChatResult
from corral.server.bodies import SAMPLING
from corral.server.service import Service
from corral.server.streaming import PieceStream


def service(request: Any) -> Service:
    return request.app.state.service


def json_response(data: Any, status: int = 200, headers: dict | None = None) -> Any:
    from starlette.responses import JSONResponse

    return JSONResponse(data, status, headers=headers)


def event_stream(events: Any) -> Any:
    """A ``text/event-stream`` answer of the SSE strings ``events`` yields."""
    from starlette.responses import StreamingResponse

    return StreamingResponse(events, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def named_sse(name: str, data: dict) -> str:
    """One server-sent event with an ``event:`` name (Anthropic's and the Responses API's streams)."""
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def as_result(value: Any) -> ChatResult:
    """Drivers answer a ChatResult; a plain string is accepted too."""
    return value if isinstance(value, ChatResult) else ChatResult(text=str(value))


#: Fields every driver takes (the rest must be in the driver's ``request_fields``).
ALWAYS = frozenset({"stop", "max_tokens", "temperature", "top_p", "top_k", "seed"})


def check_supported(entry: Any, params: dict) -> None:
    """Refuse what the model's driver does not honour, naming the field, instead of ignoring it."""
    declared = getattr(entry.handle, "request_fields", None)
    allowed = frozenset(declared) if declared is not None else frozenset(SAMPLING) | {"stop"}
    for name in params:
        if name not in allowed and name not in ALWAYS:
            raise InvalidRequest(f"{entry.model.name} ({entry.model.format}) does not support the field {name!r} "
                                 "with its driver; leave it out")


def tool_params(tools: list | None, choice: Any, parallel: bool | None) -> dict[str, Any]:
    """OpenAI-shaped ``tools``, ``tool_choice`` and ``parallel_tool_calls`` (a surface's own, translated),
    checked by :func:`corral.tools.read_tools`, as the driver parameters they make ({} without tools)."""
    from corral.tools import read_tools

    out: dict[str, Any] = {}
    if read_tools(tools, choice, parallel) is not None:
        out["tools"] = tools
        if choice is not None:
            out["tool_choice"] = choice
        if parallel is not None:
            out["parallel_tool_calls"] = parallel
    return out


class Generation:
    """A driver's stream running in its model's turn: ``entry``, the :class:`PieceStream`, the first
    piece, and (once it ended) the :class:`ChatResult` the driver's generator returned (or None)."""

    def __init__(self, entry: Any, pieces: PieceStream, ended: dict) -> None:
        self.entry = entry
        self.pieces = pieces
        self._ended = ended
        self.first: Any = None

    @property
    def result(self) -> ChatResult | None:
        value = self._ended.get("result")
        return value if isinstance(value, ChatResult) else None


async def open_stream(request: Any, ref: str, kind: str, item: Any, params: dict) -> Generation:
    """Load ``ref`` if needed, wait for its turn, and start ``handle.<kind>(item, stream=True, **params)``.

    The turn is held until the stream ends (see :mod:`corral.server.streaming`); errors before the first
    piece are raised here, so they still get a proper status code.
    """
    entry, turn = await service(request).enter(ref, kind)
    try:
        check_supported(entry, params)
    except BaseException:
        turn.release()
        raise
    handle = entry.handle
    ended: dict[str, Any] = {}

    def produce():
        try:
            # A driver's stream may return a ChatResult: why it ended and the token counts.
            ended["result"] = yield from getattr(handle, kind)(item, stream=True, **params)
        finally:
            entry.touch()

    generation = Generation(entry, PieceStream(turn, produce), ended)
    generation.first = await generation.pieces.next()
    return generation


# --- blocks ----------------------------------------------------------------------------------------------


@define
class Block:
    """One part of an answer: ``reasoning`` or ``text`` (``text`` holds it), or a ``call`` (``text``
    holds its JSON arguments)."""

    kind: str
    text: str = ""
    id: str | None = None
    name: str | None = None

    def arguments(self) -> dict:
        """A call's arguments as an object ({} when the answer was cut inside them)."""
        try:
            value = json.loads(self.text) if self.text.strip() else {}
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {"value": value}


@define
class Step:
    """What :class:`Blocks` tells a surface: ``start`` a block, a ``delta`` of its text, or its ``stop``."""

    what: str
    index: int
    block: Block
    text: str = ""


@define
class Blocks:
    """Streamed pieces (text or :class:`corral.tools.Delta`) in, ordered blocks and :class:`Step` events
    out. ``stops``: strings that end the text where they first appear (the text before one is kept,
    ``stopped`` names it; later pieces are ignored)."""

    stops: Sequence[str] = ()
    blocks: list[Block] = field(factory=list)
    stopped: str | None = None
    pieces: int = 0
    _open: int | None = None
    _calls: dict[int, int] = field(factory=dict)
    _held: str = ""

    def _to(self, kind: str, steps: list[Step], **meta: Any) -> int:
        if self._open is not None and self.blocks[self._open].kind == kind and kind != "call":
            return self._open
        self._close(steps)
        self.blocks.append(Block(kind, **meta))
        self._open = len(self.blocks) - 1
        steps.append(Step("start", self._open, self.blocks[-1]))
        return self._open

    def _close(self, steps: list[Step]) -> None:
        if self._open is not None:
            steps.append(Step("stop", self._open, self.blocks[self._open]))
            self._open = None

    def _add(self, kind: str, text: str, steps: list[Step]) -> None:
        if text:
            index = self._to(kind, steps)
            self.blocks[index].text += text
            steps.append(Step("delta", index, self.blocks[index], text))

    def _text(self, text: str, steps: list[Step]) -> None:
        if not self.stops:
            self._add("text", text, steps)
            return
        text = self._held + text
        cuts = [(i, s) for s in self.stops if (i := text.find(s)) >= 0]
        if cuts:
            cut, self.stopped = min(cuts)
            self._held = ""
            self._add("text", text[:cut], steps)
            return
        keep = max((n for s in self.stops for n in range(min(len(s) - 1, len(text)), 0, -1)
                    if text.endswith(s[:n])), default=0)
        self._held = text[len(text) - keep:] if keep else ""
        self._add("text", text[:len(text) - keep], steps)

    def feed(self, piece: Any) -> list[Step]:
        """The steps one streamed piece makes (none once a stop string was met)."""
        steps: list[Step] = []
        if self.stopped is not None:
            return steps
        self.pieces += 1
        if isinstance(piece, str):
            self._text(piece, steps)
            return steps
        self._add("reasoning", piece.reasoning, steps)
        if piece.content:
            self._text(piece.content, steps)
        for call in piece.tool_calls:
            if call.id is not None or call.index not in self._calls:
                self._calls[call.index] = self._to("call", steps, id=call.id, name=call.name)
            index = self._calls[call.index]
            if call.arguments:
                self.blocks[index].text += call.arguments
                steps.append(Step("delta", index, self.blocks[index], call.arguments))
        return steps

    def close(self) -> list[Step]:
        """The last steps: held text that began no stop string after all, and the open block's stop."""
        steps: list[Step] = []
        if self._held:
            held, self._held, stops = self._held, "", self.stops
            self.stops = ()
            self._add("text", held, steps)
            self.stops = stops
        self._close(steps)
        return steps

    @property
    def calls(self) -> list[Block]:
        return [b for b in self.blocks if b.kind == "call"]


def finish_reason(result: ChatResult | None, blocks: Blocks, max_tokens: int | None) -> str:
    """Why the answer ended, in OpenAI's words (``stop``, ``length``, ``tool_calls``), plus ``stop_sequence``
    when one of ``blocks.stops`` ended it."""
    if blocks.stopped is not None:
        return "stop_sequence"
    if result is not None and result.finish_reason:
        if result.finish_reason == "stop" and blocks.calls:
            return "tool_calls"
        return result.finish_reason
    if blocks.calls:
        return "tool_calls"
    return "length" if max_tokens and blocks.pieces >= max_tokens else "stop"


def collect(handle: Any, messages: list, params: dict, blocks: Blocks) -> ChatResult | None:
    """Run a streamed chat to its end in this thread, feeding ``blocks``; the driver's ChatResult, if it
    returned one. A met stop string closes the generation at once."""
    iterator: Iterator[Any] = iter(handle.chat(messages, stream=True, **params))
    try:
        while blocks.stopped is None:
            try:
                piece = next(iterator)
            except StopIteration as end:
                return end.value if isinstance(end.value, ChatResult) else None
            if piece:
                blocks.feed(piece if not isinstance(piece, (bytes, int, float)) else str(piece))
    finally:
        close: Callable | None = getattr(iterator, "close", None)
        if close is not None:
            close()
    return None


async def drain(generation: Generation, blocks: Blocks) -> Any:
    """The steps of a running :class:`Generation`, piece by piece, until it ends or a stop string is met
    (then the generation is stopped)."""
    piece = generation.first
    while piece is not None:
        for step in blocks.feed(piece):
            yield step
        if blocks.stopped is not None:
            generation.pieces.stop()
            break
        piece = await generation.pieces.next()
    for step in blocks.close():
        yield step
