"""Reasoning: the thought a thinking model writes before its answer (``<think>…</think>``), kept apart
from the answer's content (OpenAI-compatible servers send it as ``reasoning_content``).

Templates of thinking models either let the model open the thought itself or open it in the generation
prompt (DeepSeek-R1, QwQ, Qwen 3): then the answer starts inside the thought and only its end shows.
Qwen 3 style templates turn thinking off with ``enable_thinking=False``; :func:`thinking_off` says when
a request or a saved setting asks for that.
"""

from __future__ import annotations

from typing import Any, Mapping

from corral.errors import InvalidRequest
from corral.records import SettingSpec

#: The pairs of tags that enclose a thought, tried in this order.
TAGS: tuple[tuple[str, str], ...] = (("<think>", "</think>"), ("<thinking>", "</thinking>"),
                                     ("<|channel|>analysis<|message|>", "<|end|>"))
EFFORTS = ("none", "minimal", "low", "medium", "high")

#: A saved per-model setting: false turns thinking off for every request that does not ask otherwise.
THINKING = SettingSpec("thinking", bool, "let a thinking model think (false: its template's "
                       "enable_thinking=false, where it has one)", None)


def read_effort(value: Any) -> str | None:
    """OpenAI's ``reasoning_effort``, checked."""
    if value is None:
        return None
    if value not in EFFORTS:
        raise InvalidRequest(f"reasoning_effort {value!r} is not one of {', '.join(EFFORTS)}")
    return value


def thinking_off(settings: Mapping[str, Any], effort: str | None) -> bool:
    """Whether this request must not think: ``reasoning_effort`` ``none``, or (when the request leaves
    it unset) the model's ``thinking`` setting saved as false."""
    if effort is not None:
        return effort == "none"
    return settings.get("thinking") is False


def template_switch(template: str | None) -> bool:
    """Whether a chat template can turn thinking off (it reads ``enable_thinking``)."""
    return bool(template) and "enable_thinking" in template  # type: ignore[operator]


def opens_thought(prompt: str) -> bool:
    """Whether a rendered prompt ends inside an opened thought (the model writes only its end)."""
    tail = prompt.rstrip()
    return any(tail.endswith(open_) for open_, _ in TAGS[:2])


def split_reasoning(text: str, *, opened: bool = False) -> tuple[str | None, str]:
    """``(reasoning, content)`` of a finished answer; reasoning is None when there was no thought (or an
    empty one, as templates write when thinking is off).

    ``opened``: the prompt ended inside a thought. A ``</think>`` with no ``<think>`` before it means the
    same. A thought that never ends is all reasoning.
    """
    stripped = text.lstrip()
    for open_, close in TAGS:
        if stripped.startswith(open_):
            body = stripped[len(open_):]
        elif open_ == "<think>" and (opened or (close in text and open_ not in text.split(close, 1)[0])):
            body = text
        else:
            continue
        end = body.find(close)
        thought, content = (body, "") if end < 0 else (body[:end], body[end + len(close):].lstrip())
        return (thought.strip() or None), content
    return None, text


class ReasoningStream:
    """Splits streamed text into reasoning and content pieces, holding back what could be a tag."""

    def __init__(self, *, opened: bool = False) -> None:
        self.state = "thought" if opened else "start"
        self.close = TAGS[0][1]
        self.buffer = ""

    def feed(self, piece: str) -> tuple[str, str]:
        """``(reasoning, content)`` safe to send after ``piece``."""
        self.buffer += piece
        reasoning = content = ""
        while True:
            if self.state == "start":
                stripped = self.buffer.lstrip()
                if not stripped:
                    return reasoning, content
                for open_, close in TAGS:
                    if stripped.startswith(open_):
                        self.buffer, self.state, self.close = stripped[len(open_):], "thought", close
                        break
                    if open_.startswith(stripped):
                        return reasoning, content  # still could become a tag
                else:
                    self.state = "content"
                continue
            if self.state == "thought":
                end = self.buffer.find(self.close)
                if end >= 0:
                    reasoning += self.buffer[:end]
                    self.buffer, self.state = self.buffer[end + len(self.close):].lstrip(), "after"
                    continue
                keep = _partial_suffix(self.buffer, self.close)
                reasoning += self.buffer[:len(self.buffer) - keep]
                self.buffer = self.buffer[len(self.buffer) - keep:]
                return reasoning, content
            if self.state == "after":
                self.buffer = self.buffer.lstrip()
                if not self.buffer:
                    return reasoning, content
                self.state = "content"
            content += self.buffer
            self.buffer = ""
            return reasoning, content

    def flush(self) -> tuple[str, str]:
        rest, self.buffer = self.buffer, ""
        return (rest, "") if self.state == "thought" else ("", rest)


def _partial_suffix(text: str, tag: str) -> int:
    """How many characters at the end of ``text`` could begin ``tag``."""
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:n]):
            return n
    return 0
