"""Finding the tool calls in a model's answer, per model family.

Each family writes calls its own way (the formats its chat template teaches):

* ``hermes`` (Hermes, Qwen 2.5 / 3, many fine-tunes): ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``;
* ``llama3`` (Llama 3.1-3.3): a JSON object ``{"name": ..., "parameters": {...}}``, optionally after
  ``<|python_tag|>``, which also introduces built-in calls written as ``name.call(key="value")``;
* ``mistral``: ``[TOOL_CALLS]`` then a JSON list of calls, or (newer tokenizers) ``name[ARGS]{...}``;
* ``deepseek``: ``<｜tool▁call▁begin｜>function<｜tool▁sep｜>name`` and a fenced JSON block, or
  (V3.1) ``name<｜tool▁sep｜>{...}``, between ``<｜tool▁calls▁begin｜>`` and ``<｜tool▁calls▁end｜>``;
* ``gemma``: a fenced ````tool_code```` block holding ``name(key=value)``, or FunctionGemma's
  ``<start_function_call>call:name{key:<escape>value<escape>}<end_function_call>``;
* ``json``: the whole answer is a call object (``arguments`` or ``parameters``) or a list of them,
  optionally fenced as ````json````. Every family falls back to it, and constrained calls use it.

A call names one of the request's tools and carries a JSON object of arguments; anything else, or
markup that does not parse, leaves the whole answer as content: a malformed answer is shown, never
lost or half-parsed. The finders also work on an unfinished answer (``final=False``), which is how
:mod:`corral.tools.stream` sends argument pieces while they are generated.
"""

from __future__ import annotations

import ast
import json
import re
from typing import Any, Callable, Iterable

from attrs import frozen

from corral.tools.calls import ToolCall, call_id

FAMILIES = ("hermes", "llama3", "mistral", "deepseek", "gemma", "json")

_DS_CALLS_BEGIN, _DS_CALLS_END = "<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>"
_DS_CALL_BEGIN, _DS_CALL_END, _DS_SEP = "<｜tool▁call▁begin｜>", "<｜tool▁call▁end｜>", "<｜tool▁sep｜>"

#: Texts that open a call in each family (held back while streaming until they are told apart).
MARKERS: dict[str, tuple[str, ...]] = {
    "hermes": ("<tool_call>",),
    "llama3": ("<|python_tag|>",),
    "mistral": ("[TOOL_CALLS]",),
    "deepseek": (_DS_CALLS_BEGIN, _DS_CALL_BEGIN),
    "gemma": ("```tool_code", "<start_function_call>"),
    "json": (),
}


def family_of(template: str | None) -> str:
    """The tool-call family a chat template's source teaches its model (``json`` when it says nothing)."""
    source = template or ""
    if "<tool_call>" in source:
        return "hermes"
    if "[TOOL_CALLS]" in source or "[AVAILABLE_TOOLS]" in source:
        return "mistral"
    if "tool▁call" in source or "tool_calls_begin" in source:
        return "deepseek"
    if "<|python_tag|>" in source or ("<|start_header_id|>" in source and "ipython" in source):
        return "llama3"
    if "<start_function_call>" in source or "tool_code" in source or "<start_of_turn>" in source:
        return "gemma"
    return "json"


@frozen
class Span:
    """One call found in an answer: the region of text it takes (markup included), the function's name
    (None until it is known), the arguments' JSON text so far, and whether they are complete.
    ``built`` arguments were made from another notation (Python-style calls): they are only known
    whole."""

    start: int
    end: int
    name: str | None
    arguments: str
    complete: bool
    built: bool = False


# --- scanning JSON in text ---------------------------------------------------------------------------

_WS = " \t\r\n"


def _skip(text: str, i: int) -> int:
    while i < len(text) and text[i] in _WS:
        i += 1
    return i


def value_end(text: str, i: int) -> int | None:
    """The index just past the JSON value starting at ``text[i]``, or None while it is unfinished."""
    if i >= len(text):
        return None
    c = text[i]
    if c == '"':
        j = i + 1
        while j < len(text):
            if text[j] == "\\":
                j += 2
                continue
            if text[j] == '"':
                return j + 1
            j += 1
        return None
    if c in "{[":
        depth, j, in_string = 0, i, False
        while j < len(text):
            ch = text[j]
            if in_string:
                if ch == "\\":
                    j += 2
                    continue
                if ch == '"':
                    in_string = False
            elif ch == '"':
                in_string = True
            elif ch in "{[":
                depth += 1
            elif ch in "}]":
                depth -= 1
                if depth == 0:
                    return j + 1
            j += 1
        return None
    m = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?|true|false|null").match(text, i)
    if not m or m.end() == len(text):
        return None  # a number or literal at the very end may still grow
    return m.end()


def _members(text: str, i: int) -> tuple[list[tuple[str, int, int | None]], int | None]:
    """The top-level members of the object at ``text[i]`` (``{``): ``(key, value_start, value_end)``,
    the last one possibly unfinished (``value_end`` None), and the object's end (None if unfinished)."""
    members: list[tuple[str, int, int | None]] = []
    j = _skip(text, i + 1)
    while j < len(text):
        if text[j] == "}":
            return members, j + 1
        if text[j] == ",":
            j = _skip(text, j + 1)
            continue
        if text[j] != '"':
            return members, None
        key_end = value_end(text, j)
        if key_end is None:
            return members, None
        try:
            key = json.loads(text[j:key_end])
        except ValueError:
            return members, None
        j = _skip(text, key_end)
        if j >= len(text) or text[j] != ":":
            return members, None
        start = _skip(text, j + 1)
        if start >= len(text):
            return members, None
        end = value_end(text, start)
        members.append((key, start, end))
        if end is None:
            return members, None
        j = _skip(text, end)
    return members, None


def _object_call(text: str, i: int) -> Span | None:
    """A call written as a JSON object at ``text[i]``: ``name`` and ``arguments`` (or ``parameters``),
    also nested as ``{"function": {...}}``."""
    members, end = _members(text, i)
    found = {key: (start, stop) for key, start, stop in members}
    if "function" in found and "name" not in found:
        start, stop = found["function"]
        if text[start:start + 1] == "{":
            inner = _object_call(text, start)
            if inner is None:
                return None
            return Span(i, end if end is not None else len(text), inner.name, inner.arguments,
                        inner.complete and end is not None, inner.built)
    name = None
    if "name" in found and found["name"][1] is not None:
        start, stop = found["name"]
        try:
            value = json.loads(text[start:stop])
        except ValueError:
            return None
        name = value if isinstance(value, str) else None
    key = "arguments" if "arguments" in found else "parameters" if "parameters" in found else None
    arguments, complete, built = "", False, False
    if key is not None:
        start, stop = found[key]
        if text[start:start + 1] == '"':  # arguments sent as a JSON string holding JSON
            built = True
            if stop is not None:
                try:
                    arguments = json.loads(text[start:stop])
                except ValueError:
                    return None
                complete = True
        else:
            arguments = text[start:stop] if stop is not None else text[start:]
            complete = stop is not None
    if end is not None and key is None:
        arguments, complete = "{}", True  # a call without arguments
    return Span(i, end if end is not None else len(text), name, arguments, complete and end is not None, built)


def _objects(text: str, i: int, separators: str = ";,") -> list[Span]:
    """Call objects one after another from ``text[i]``, separated by whitespace or ``separators``."""
    spans: list[Span] = []
    j = _skip(text, i)
    while j < len(text) and text[j] == "{":
        span = _object_call(text, j)
        if span is None:
            break
        spans.append(span)
        if not span.complete:
            break
        j = _skip(text, span.end)
        while j < len(text) and text[j] in separators:
            j = _skip(text, j + 1)
    return spans


def _array(text: str, i: int) -> tuple[list[Span], int | None]:
    """Call objects in the JSON list at ``text[i]`` (``[``), and the list's end."""
    spans: list[Span] = []
    j = _skip(text, i + 1)
    while j < len(text):
        if spans and spans[-1].end < j:  # the separator between items belongs to the calls
            spans[-1] = _extend(spans[-1], j)
        if text[j] == "]":
            return spans, j + 1
        if text[j] == ",":
            j = _skip(text, j + 1)
            continue
        if text[j] != "{":
            return [], None
        span = _object_call(text, j)
        if span is None:
            return [], None
        spans.append(span)
        if not span.complete:
            return spans, None
        j = _skip(text, span.end)
    return spans, None


# --- Python-style calls ------------------------------------------------------------------------------


def _python_call(source: str) -> tuple[str, str] | None:
    """``name(key=value, ...)`` or ``name.call(...)`` as (name, arguments JSON); None if it is not one."""
    try:
        node = ast.parse(source.strip(), mode="eval").body
    except (SyntaxError, ValueError):
        return None
    if not isinstance(node, ast.Call) or node.args:
        return None
    func = node.func
    if isinstance(func, ast.Attribute) and func.attr == "call" and isinstance(func.value, ast.Name):
        name = func.value.id
    elif isinstance(func, ast.Name):
        name = func.id
    elif isinstance(func, ast.Attribute):
        name = ast.unparse(func)
    else:
        return None
    arguments: dict[str, Any] = {}
    for keyword in node.keywords:
        if keyword.arg is None:
            return None
        try:
            arguments[keyword.arg] = ast.literal_eval(keyword.value)
        except (ValueError, SyntaxError):
            return None
    return name, json.dumps(arguments, ensure_ascii=False)


# --- families ----------------------------------------------------------------------------------------


def _leading_json(text: str, final: bool) -> list[Span]:
    """The generic form: the whole answer is a call or a list of calls, perhaps in a ```json fence."""
    i = _skip(text, 0)
    fence = re.compile(r"```(?:json)?[ \t]*\n?").match(text, i)
    if fence:
        i = _skip(text, fence.end())
    if i >= len(text):
        return []
    if text[i] == "{":
        spans = _objects(text, i, separators=";\n")
    elif text[i] == "[":
        spans, end = _array(text, i)
        if spans and end is not None:
            spans[-1] = _extend(spans[-1], end)
    else:
        return []
    if fence and spans and spans[-1].complete:
        close = text.find("```", spans[-1].end)
        if close >= 0 and not text[spans[-1].end:close].strip(" ]\n\t\r"):
            spans[-1] = _extend(spans[-1], close + 3)
    if spans:
        spans[0] = Span(0, spans[0].end, spans[0].name, spans[0].arguments, spans[0].complete, spans[0].built)
    return spans


def _extend(span: Span, end: int) -> Span:
    return Span(span.start, max(end, span.end), span.name, span.arguments, span.complete, span.built)


def _hermes(text: str, final: bool) -> list[Span]:
    spans: list[Span] = []
    for match in re.finditer(re.escape("<tool_call>"), text):
        body = _skip(text, match.end())
        if body >= len(text):
            spans.append(Span(match.start(), len(text), None, "", False))
            break
        if text[body] != "{":
            return []
        found = _objects(text, body)
        if not found:
            return []
        close = text.find("</tool_call>", found[-1].end)
        end = close + len("</tool_call>") if close >= 0 else found[-1].end
        found[0] = Span(match.start(), found[0].end, found[0].name, found[0].arguments, found[0].complete,
                        found[0].built)
        found[-1] = _extend(found[-1], end)
        spans.extend(found)
    return spans


def _llama3(text: str, final: bool) -> list[Span]:
    tag = text.find("<|python_tag|>")
    if tag < 0:
        return _leading_json(text, final)
    body = _skip(text, tag + len("<|python_tag|>"))
    if body < len(text) and text[body] == "{":
        spans = _objects(text, body)
        if spans:
            spans[0] = Span(tag, spans[0].end, spans[0].name, spans[0].arguments, spans[0].complete, spans[0].built)
        return spans
    end = text.find("<|eom_id|>", body)
    source = text[body:end if end >= 0 else len(text)]
    if not final:
        return [Span(tag, len(text), None, "", False, True)]
    call = _python_call(source)
    if call is None:
        return []
    return [Span(tag, len(text), call[0], call[1], True, True)]


def _mistral(text: str, final: bool) -> list[Span]:
    spans: list[Span] = []
    for match in re.finditer(re.escape("[TOOL_CALLS]"), text):
        body = _skip(text, match.end())
        if body < len(text) and text[body] == "[":
            found, end = _array(text, body)
            if not found:
                return [] if final or end is not None else [Span(match.start(), len(text), None, "", False)]
            found[0] = Span(match.start(), found[0].end, found[0].name, found[0].arguments, found[0].complete,
                            found[0].built)
            if end is not None:
                found[-1] = _extend(found[-1], end)
            spans.extend(found)
            continue
        args = text.find("[ARGS]", body)
        if args < 0:
            if final:
                return []
            spans.append(Span(match.start(), len(text), None, "", False))
            continue
        name = text[body:args].split("[CALL_ID]")[0].strip()
        start = _skip(text, args + len("[ARGS]"))
        stop = value_end(text, start) if start < len(text) else None
        arguments = text[start:stop] if stop is not None else text[start:]
        spans.append(Span(match.start(), stop if stop is not None else len(text), name or None, arguments,
                          stop is not None))
    return spans or _leading_json(text, final)


def _deepseek(text: str, final: bool) -> list[Span]:
    spans: list[Span] = []
    outer = text.find(_DS_CALLS_BEGIN)
    for match in re.finditer(re.escape(_DS_CALL_BEGIN), text):
        start = match.start() if not spans and outer < 0 else (outer if not spans else match.start())
        sep = text.find(_DS_SEP, match.end())
        if sep < 0:
            if final:
                return []
            spans.append(Span(start, len(text), None, "", False))
            break
        head = text[match.end():sep].strip()
        after = sep + len(_DS_SEP)
        if head == "function":  # R1 / V3: function<sep>NAME\n```json\n{...}\n```
            newline = text.find("\n", after)
            if newline < 0:
                if final:
                    return []
                spans.append(Span(start, len(text), None, "", False))
                break
            name = text[after:newline].strip()
            fence = re.compile(r"\s*```(?:json)?[ \t]*\n").match(text, newline)
            body = fence.end() if fence else _skip(text, newline)
            if not fence and text[body:body + 1] == "`":
                if final:
                    return []
                spans.append(Span(start, len(text), name or None, "", False))  # the fence is still coming
                break
        else:  # V3.1: NAME<sep>{...}
            name, body = head, _skip(text, after)
        stop = value_end(text, body) if body < len(text) else None
        arguments = text[body:stop] if stop is not None else text[body:]
        end = len(text)
        if stop is not None:
            close = text.find(_DS_CALL_END, stop)
            end = close + len(_DS_CALL_END) if close >= 0 else stop
        spans.append(Span(start, end, name or None, arguments, stop is not None))
    if spans and spans[-1].complete:
        close = text.find(_DS_CALLS_END, spans[-1].end)
        if close >= 0:
            spans[-1] = _extend(spans[-1], close + len(_DS_CALLS_END))
    return spans or _leading_json(text, final)


_FG_VALUE = re.compile(r"<escape>(.*?)<escape>|(-?\d+(?:\.\d+)?|true|false|null)", re.S)


def _gemma(text: str, final: bool) -> list[Span]:
    spans: list[Span] = []
    for match in re.finditer(r"```tool_code[ \t]*\n?", text):
        close = text.find("```", match.end())
        if close < 0:
            if final:
                return []
            spans.append(Span(match.start(), len(text), None, "", False, True))
            break
        call = _python_call(text[match.start() + len(match.group(0)):close]) if final or close >= 0 else None
        if call is None:
            return []
        spans.append(Span(match.start(), close + 3, call[0], call[1], True, True))
    for match in re.finditer(re.escape("<start_function_call>"), text):
        close = text.find("<end_function_call>", match.end())
        if close < 0:
            if final:
                return []
            spans.append(Span(match.start(), len(text), None, "", False, True))
            break
        call = _function_gemma(text[match.end():close])
        if call is None:
            return []
        spans.append(Span(match.start(), close + len("<end_function_call>"), call[0], call[1], True, True))
    return sorted(spans, key=lambda s: s.start) or _leading_json(text, final)


def _function_gemma(body: str) -> tuple[str, str] | None:
    """``call:name{key:<escape>text<escape>,n:3}`` as (name, arguments JSON)."""
    m = re.fullmatch(r"\s*call:([\w.\-]+)\{(.*)\}\s*", body, re.S)
    if not m:
        return None
    arguments: dict[str, Any] = {}
    rest = m.group(2)
    pos = 0
    while pos < len(rest):
        key = re.compile(r"\s*([\w\-]+)\s*:").match(rest, pos)
        if not key:
            return None
        value = _FG_VALUE.match(rest, key.end())
        if not value:
            return None
        arguments[key.group(1)] = value.group(1) if value.group(1) is not None else json.loads(value.group(2))
        pos = value.end()
        comma = re.compile(r"\s*,?").match(rest, pos)
        pos = comma.end() if comma else pos
    return m.group(1), json.dumps(arguments, ensure_ascii=False)


FINDERS: dict[str, Callable[[str, bool], list[Span]]] = {
    "hermes": _hermes, "llama3": _llama3, "mistral": _mistral, "deepseek": _deepseek, "gemma": _gemma,
    "json": _leading_json,
}


def find_calls(text: str, family: str, *, final: bool = True) -> list[Span]:
    """Every call in ``text`` written in ``family``'s way (or the generic JSON form), in order."""
    finder = FINDERS.get(family, _leading_json)
    spans = finder(text, final)
    if not spans and finder is not _leading_json:
        spans = _leading_json(text, final)
    return spans


@frozen
class Parsed:
    """An answer split into the text shown to the user and the calls it made."""

    content: str
    calls: tuple[ToolCall, ...] = ()


def valid_arguments(arguments: str) -> bool:
    try:
        return isinstance(json.loads(arguments), dict)
    except ValueError:
        return False


def parse_tool_calls(text: str, family: str, names: Iterable[str] | None = None, *,
                     ids: Iterable[str] = ()) -> Parsed:
    """Split a finished answer into content and calls. Calls must name one of ``names`` (None: any) and
    carry a JSON object; otherwise, or when the markup is broken, all of ``text`` stays content.
    ``ids`` gives the calls ids already announced (a stream's); the rest get fresh ones."""
    allowed = None if names is None else frozenset(names)
    spans = find_calls(text, family, final=True)
    if not spans:
        return Parsed(text)
    for span in spans:
        if not span.complete or span.name is None or (allowed is not None and span.name not in allowed):
            return Parsed(text)
        if not valid_arguments(span.arguments):
            return Parsed(text)
    pieces, last = [], 0
    for span in spans:
        pieces.append(text[last:span.start])
        last = max(last, span.end)
    pieces.append(text[last:])
    given = list(ids)
    calls = tuple(
        ToolCall(id=given[i] if i < len(given) else call_id(family), name=span.name or "", arguments=span.arguments)
        for i, span in enumerate(spans)
    )
    content = "".join(pieces).strip()
    for markers in (("<|python_tag|>", "<|eom_id|>", _DS_CALLS_BEGIN, _DS_CALLS_END),):
        for marker in markers:
            content = content.replace(marker, "")
    return Parsed(content.strip(), calls)
