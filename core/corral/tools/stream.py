"""Streamed answers with structure: what a driver's stream may yield besides plain text, and the
assembler that turns streamed text into tool-call deltas with incremental argument pieces.

A driver's streaming ``chat`` yields ``str`` pieces (content) or :class:`Delta` objects (content,
reasoning, tool-call pieces, token log-probabilities). Protocol surfaces turn them into their own
events: OpenAI's ``delta.content`` / ``delta.reasoning_content`` / ``delta.tool_calls``.
"""

from __future__ import annotations

from typing import Iterable

from attrs import frozen

from corral.tools.calls import ToolCall, call_id
from corral.tools.parsers import MARKERS, find_calls, parse_tool_calls


@frozen
class TokenLogprob:
    """One generated token: its text, log-probability (natural log, ≤ 0), UTF-8 bytes, and the most
    likely alternatives at its position as ``(token, logprob)`` pairs, best first."""

    token: str
    logprob: float
    bytes: tuple[int, ...] = ()
    top: tuple[tuple[str, float], ...] = ()


@frozen
class ToolCallDelta:
    """A piece of the call at ``index``: its first piece has ``id`` and ``name``, later ones carry the
    next part of the ``arguments`` JSON text."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@frozen
class Delta:
    """A piece of a streamed answer."""

    content: str = ""
    reasoning: str = ""
    tool_calls: tuple[ToolCallDelta, ...] = ()
    logprobs: tuple[TokenLogprob, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.content or self.reasoning or self.tool_calls or self.logprobs)


def _held(text: str, markers: Iterable[str]) -> int:
    """How many characters at the end of ``text`` could begin one of ``markers``."""
    keep = 0
    for marker in markers:
        for n in range(min(len(marker) - 1, len(text)), keep, -1):
            if text.endswith(marker[:n]):
                keep = n
                break
    return keep


class ToolCallStream:
    """Streamed text in, content pieces and tool-call deltas out.

    Text before a call's markup streams as content; from the markup on, the text is held and each call
    is announced (id and name) as soon as its name is complete, then its arguments follow piece by piece
    as the model writes them. :meth:`close` parses the whole answer: markup that turns out not to be a
    valid call of an offered tool is sent as content then.
    """

    def __init__(self, family: str, names: Iterable[str] | None = None, *, leading_json: bool = True) -> None:
        self.family = family
        self.names = None if names is None else frozenset(names)
        self.markers = MARKERS.get(family, ())
        self.leading_json = leading_json
        self.text = ""
        self.shown = 0  # characters of text sent as content
        self.region: int | None = None  # where call markup starts
        self.ids: list[str] = []
        self.sent: list[int] = []  # argument characters sent per call
        self.called: list[str] = []  # names announced per call
        self.arguments: list[str] = []  # arguments sent per call

    def _region(self) -> int | None:
        found = [i for i in (self.text.find(m, self.shown) for m in self.markers) if i >= 0]
        if found:
            return min(found)
        if self.leading_json and not self.text[:self.shown].strip():
            stripped = self.text.lstrip()
            if stripped[:1] in ("{", "[") or (stripped and "```json".startswith(stripped[:7])) \
                    or stripped.startswith("```json"):
                return len(self.text) - len(stripped)
        return None

    def feed(self, piece: str) -> tuple[str, tuple[ToolCallDelta, ...]]:
        """Content safe to show now, and the new tool-call deltas."""
        self.text += piece
        if self.region is None:
            self.region = self._region()
        if self.region is None:
            keep = _held(self.text, self.markers)
            safe = len(self.text) - keep
            if self.leading_json and not self.text[:safe].strip():
                return "", ()  # only whitespace so far: it may still open a JSON call
            content, self.shown = self.text[self.shown:safe], max(self.shown, safe)
            return content, ()
        content = self.text[self.shown:self.region]
        self.shown = max(self.shown, self.region)
        return content, self._deltas(final=False)

    def _deltas(self, *, final: bool) -> tuple[ToolCallDelta, ...]:
        region_text = self.text[self.region or 0:]
        out: list[ToolCallDelta] = []
        for index, span in enumerate(find_calls(region_text, self.family, final=final)):
            if span.name is None or (self.names is not None and span.name not in self.names):
                break
            if span.built and not final:
                break  # arguments made from another notation are only known whole
            if index >= len(self.ids):
                self.ids.append(call_id(self.family))
                self.sent.append(0)
                self.called.append(span.name)
                out.append(ToolCallDelta(index=index, id=self.ids[index], name=span.name))
            if span.built and not span.complete:
                break
            more = span.arguments[self.sent[index]:]
            if more:
                out.append(ToolCallDelta(index=index, arguments=more))
                self.sent[index] = len(span.arguments)
                while len(self.arguments) <= index:
                    self.arguments.append("")
                self.arguments[index] = span.arguments
            if not span.complete:
                break
        return tuple(out)

    def close(self) -> tuple[str, tuple[ToolCallDelta, ...], tuple[ToolCall, ...]]:
        """The rest: content not yet sent, the last deltas, and the calls of the whole answer."""
        if self.region is None:
            rest, self.shown = self.text[self.shown:], len(self.text)
            return rest, (), ()
        parsed = parse_tool_calls(self.text[self.region:], self.family, self.names, ids=self.ids)
        if not parsed.calls and self.ids:
            # The client already holds these calls (the answer was cut short, or broke off after them):
            # they stay calls, with the arguments sent.
            sent = self.arguments + [""] * (len(self.ids) - len(self.arguments))
            self.shown = len(self.text)
            return "", (), tuple(ToolCall(i, n, a) for i, n, a in zip(self.ids, self.called, sent))
        if not parsed.calls:
            rest, self.shown = self.text[self.shown:], len(self.text)
            return rest, (), ()
        deltas = list(self._deltas(final=True))
        calls = []
        for index, call in enumerate(parsed.calls):
            if index >= len(self.ids):  # a call whose arguments were sent whole at the end
                deltas.append(ToolCallDelta(index=index, id=call.id, name=call.name))
                deltas.append(ToolCallDelta(index=index, arguments=call.arguments))
                calls.append(call)
            else:
                calls.append(ToolCall(self.ids[index], call.name, call.arguments))
        tail = ("\n" + parsed.content) if parsed.content else ""
        self.shown = len(self.text)
        return tail if self.text[:self.region].strip() else parsed.content, tuple(deltas), tuple(calls)
