"""Shaping a generated answer for the client: reasoning apart, tool calls parsed, for a whole answer or
a stream. Drivers make one :class:`AnswerShape` per request from what they know (the template's tool
family, whether the prompt opened a thought, the request's tools) and run their text through it.
"""

from __future__ import annotations

from typing import Iterable

from attrs import frozen

from corral.tools.calls import ToolCall, ToolRequest
from corral.tools.parsers import parse_tool_calls
from corral.tools.reasoning import ReasoningStream, split_reasoning
from corral.tools.stream import Delta, TokenLogprob, ToolCallStream


@frozen
class Shaped:
    """A finished answer: the content shown, the thought (None without one) and the calls."""

    content: str
    reasoning: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()

    @property
    def finish_reason(self) -> str | None:
        """``tool_calls`` when the answer made calls, else None (keep the generation's own reason)."""
        return "tool_calls" if self.tool_calls else None


@frozen
class AnswerShape:
    """How to read one request's answer.

    :param family: the tool-call family of the model's template (:func:`corral.tools.family_of`);
        ``json`` when decoding was constrained to a call.
    :param tools: the request's tools (None: no tool calls are looked for).
    :param opened: the prompt ended inside a thought.
    :param reasoning: look for a thought at all.
    """

    family: str = "json"
    tools: ToolRequest | None = None
    opened: bool = False
    reasoning: bool = True

    @property
    def looks_for_calls(self) -> bool:
        return self.tools is not None and self.tools.choice != "none"

    def finish(self, text: str) -> Shaped:
        """Split a whole answer."""
        thought, content = split_reasoning(text, opened=self.opened) if self.reasoning else (None, text)
        if not self.looks_for_calls:
            return Shaped(content, thought)
        assert self.tools is not None
        parsed = parse_tool_calls(content, self.family, self.tools.names)
        return Shaped(parsed.content, thought, parsed.calls)

    def stream(self) -> "AnswerStream":
        return AnswerStream(self)


class AnswerStream:
    """Streamed text in, :class:`Delta` pieces out; :meth:`close` also gives the calls made."""

    def __init__(self, shape: AnswerShape) -> None:
        self.shape = shape
        self.thought = ReasoningStream(opened=shape.opened) if shape.reasoning else None
        tools = shape.tools
        self.calls = ToolCallStream(shape.family, tools.names) if shape.looks_for_calls and tools else None
        self.content: list[str] = []
        self.reasoning: list[str] = []

    def _content(self, text: str, final: bool = False) -> tuple[str, tuple]:
        if self.calls is None:
            return text, ()
        content, deltas = self.calls.feed(text)
        return content, deltas

    def feed(self, piece: str, logprobs: Iterable[TokenLogprob] = ()) -> Delta:
        """The delta to send for the next piece of text (may be empty while text is held back)."""
        reasoning, text = self.thought.feed(piece) if self.thought else ("", piece)
        content, deltas = self._content(text) if text else ("", ())
        self.content.append(content)
        self.reasoning.append(reasoning)
        return Delta(content=content, reasoning=reasoning, tool_calls=tuple(deltas), logprobs=tuple(logprobs))

    def close(self) -> tuple[Delta, Shaped]:
        """The last delta, and the whole answer shaped as :meth:`AnswerShape.finish` would."""
        reasoning, text = self.thought.flush() if self.thought else ("", "")
        content, deltas = self._content(text) if text else ("", ())
        calls: tuple[ToolCall, ...] = ()
        if self.calls is not None:
            rest, last, calls = self.calls.close()
            content += rest
            deltas = tuple(deltas) + tuple(last)
        self.content.append(content)
        self.reasoning.append(reasoning)
        thought = "".join(self.reasoning).strip() or None
        shaped = Shaped("".join(self.content), thought, calls)
        return Delta(content=content, reasoning=reasoning, tool_calls=tuple(deltas)), shaped
