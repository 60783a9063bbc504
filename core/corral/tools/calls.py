"""Tool calling, protocol-neutral: the tools a request offers, the choice it makes, the calls a model made.

Requests carry OpenAI's shapes (``tools``: ``[{"type": "function", "function": {"name", "description",
"parameters"}}]``; ``tool_choice``: ``"none"``, ``"auto"``, ``"required"`` or ``{"type": "function",
"function": {"name": ...}}``; ``parallel_tool_calls``). :func:`read_tools` checks them once and gives the
record every driver and protocol surface works with; other surfaces (Ollama, Anthropic, Responses)
translate their own shapes into the same one.
"""

from __future__ import annotations

import json
import uuid
from typing import Any, Mapping, Sequence

from attrs import field, frozen

from corral.errors import InvalidRequest

#: The most tools one request may offer (OpenAI's limit).
MAX_TOOLS = 128
CHOICES = ("none", "auto", "required")


@frozen
class Tool:
    """A function the model may call: its name, what it does, and the JSON schema of its arguments."""

    name: str
    description: str = ""
    parameters: Mapping[str, Any] = field(factory=dict)
    strict: bool = False

    def openai(self) -> dict[str, Any]:
        """The OpenAI shape, which is also what Hugging Face chat templates read as ``tools``."""
        function: dict[str, Any] = {"name": self.name, "description": self.description,
                                    "parameters": dict(self.parameters) or {"type": "object", "properties": {}}}
        return {"type": "function", "function": function}


@frozen
class ToolRequest:
    """The tools of one request and what it asks of them.

    ``choice`` is ``auto`` (the model decides), ``required`` (at least one call), ``named`` (exactly a
    call of ``name``) or ``none`` (tools shown to the template but no call wanted).
    """

    tools: tuple[Tool, ...]
    choice: str = "auto"
    name: str | None = None
    parallel: bool = True

    @property
    def forced(self) -> bool:
        """Whether the answer must be a call (decoding is then constrained to the call's schema)."""
        return self.choice in ("required", "named")

    @property
    def names(self) -> frozenset[str]:
        return frozenset(t.name for t in self.tools)

    def tool(self, name: str) -> Tool | None:
        return next((t for t in self.tools if t.name == name), None)

    def template_tools(self) -> list[dict[str, Any]]:
        """The ``tools`` a chat template renders (OpenAI shape); a named choice shows only that tool."""
        shown = [t for t in self.tools if self.choice != "named" or t.name == self.name]
        return [t.openai() for t in shown]


@frozen
class ToolCall:
    """One call a model made: ``arguments`` is JSON text, as OpenAI sends it."""

    id: str
    name: str
    arguments: str

    def openai(self) -> dict[str, Any]:
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments}}


def call_id(family: str | None = None) -> str:
    """A fresh tool-call id: ``call_`` and 24 hex digits like OpenAI's, or nine letters and digits for
    Mistral (whose templates refuse other ids when the call comes back)."""
    if family == "mistral":
        return uuid.uuid4().hex[:9]
    return "call_" + uuid.uuid4().hex[:24]


class JsonArguments(dict):
    """A call's arguments as chat templates read them: an object for those that write
    ``arguments | tojson`` (Hugging Face's convention), JSON text for those that concatenate it
    (DeepSeek's: ``'...' + tool['function']['arguments']``)."""

    def __str__(self) -> str:
        return json.dumps(self, ensure_ascii=False)

    def __add__(self, other: Any) -> str:
        return str(self) + other

    def __radd__(self, other: Any) -> str:
        return other + str(self)


def _tool(raw: Any, index: int) -> Tool:
    where = f"tools[{index}]"
    if not isinstance(raw, Mapping):
        raise InvalidRequest(f"{where} must be an object {{'type': 'function', 'function': {{...}}}}")
    kind = raw.get("type", "function")
    if kind != "function":
        raise InvalidRequest(f"{where}.type {kind!r} is not supported; only 'function' tools are")
    function = raw.get("function")
    if not isinstance(function, Mapping):
        raise InvalidRequest(f"{where} needs a 'function' object with a 'name'")
    unknown = sorted(set(function) - {"name", "description", "parameters", "strict"})
    if unknown:
        raise InvalidRequest(f"{where}.function.{unknown[0]} is not a supported field")
    name = function.get("name")
    if not isinstance(name, str) or not name or len(name) > 64 or not all(c.isalnum() or c in "_-." for c in name):
        raise InvalidRequest(f"{where}.function.name must be 1-64 letters, digits, '_', '-' or '.', got {name!r}")
    description = function.get("description") or ""
    if not isinstance(description, str):
        raise InvalidRequest(f"{where}.function.description must be a string")
    parameters = function.get("parameters") or {}
    if not isinstance(parameters, Mapping):
        raise InvalidRequest(f"{where}.function.parameters must be a JSON schema object")
    strict = function.get("strict") or False
    if not isinstance(strict, bool):
        raise InvalidRequest(f"{where}.function.strict must be true or false")
    return Tool(name=name, description=description, parameters=dict(parameters), strict=strict)


def read_tools(tools: Any, tool_choice: Any = None, parallel_tool_calls: Any = None) -> ToolRequest | None:
    """The checked :class:`ToolRequest` of a request's ``tools``, ``tool_choice`` and
    ``parallel_tool_calls`` (OpenAI shapes); None when the request offers no tools.

    :raises InvalidRequest: a malformed tool, two tools of one name, an unknown choice, or a named
        choice that names no offered tool.
    """
    if tools is None or (isinstance(tools, Sequence) and not isinstance(tools, str) and not tools):
        if tool_choice not in (None, "none", "auto"):
            raise InvalidRequest("tool_choice needs tools: the request offers none")
        return None
    if isinstance(tools, (str, bytes)) or not isinstance(tools, Sequence):
        raise InvalidRequest("field 'tools' must be a list of function tools")
    if len(tools) > MAX_TOOLS:
        raise InvalidRequest(f"field 'tools' holds {len(tools)} tools; at most {MAX_TOOLS} are accepted")
    parsed = tuple(_tool(t, i) for i, t in enumerate(tools))
    seen: set[str] = set()
    for tool in parsed:
        if tool.name in seen:
            raise InvalidRequest(f"two tools are named {tool.name!r}")
        seen.add(tool.name)
    if parallel_tool_calls is not None and not isinstance(parallel_tool_calls, bool):
        raise InvalidRequest("field 'parallel_tool_calls' must be true or false")
    parallel = True if parallel_tool_calls is None else parallel_tool_calls
    choice, name = _choice(tool_choice, seen)
    return ToolRequest(tools=parsed, choice=choice, name=name, parallel=parallel)


def _choice(value: Any, names: set[str]) -> tuple[str, str | None]:
    if value is None:
        return "auto", None
    if isinstance(value, str):
        if value not in CHOICES:
            raise InvalidRequest(f"tool_choice {value!r} is not one of none, auto, required, or a named function")
        return value, None
    if isinstance(value, Mapping):
        function = value.get("function")
        name = function.get("name") if isinstance(function, Mapping) else None
        if value.get("type", "function") != "function" or not isinstance(name, str):
            raise InvalidRequest("a named tool_choice is {'type': 'function', 'function': {'name': NAME}}")
        if name not in names:
            raise InvalidRequest(f"tool_choice names {name!r}, which is not among the request's tools")
        return "named", name
    raise InvalidRequest("tool_choice must be 'none', 'auto', 'required' or {'type': 'function', ...}")


def call_schema(request: ToolRequest) -> dict[str, Any]:
    """The JSON schema of an answer that must be a call (``required`` or a named choice): an object
    ``{"name": ..., "arguments": {...}}`` whose arguments follow the function's own schema, or a list of
    them when ``required`` allows parallel calls. A grammar built from it makes even a weak model call."""

    def one(tool: Tool) -> dict[str, Any]:
        arguments = dict(tool.parameters) or {"type": "object"}
        return {"type": "object", "properties": {"name": {"const": tool.name}, "arguments": arguments},
                "required": ["name", "arguments"], "additionalProperties": False}

    if request.choice == "named":
        return one(request.tool(request.name or "") or request.tools[0])
    options = [one(t) for t in request.tools]
    single = options[0] if len(options) == 1 else {"anyOf": options}
    if request.parallel:  # at most one call per tool offered: a weak model would otherwise never stop
        return {"type": "array", "items": single, "minItems": 1, "maxItems": len(options)}
    return single


def template_messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """OpenAI messages as chat templates expect them: an assistant's ``tool_calls`` with their
    ``arguments`` as objects (Hugging Face templates write ``arguments | tojson``), a ``tool`` message
    keeping its ``tool_call_id`` and gaining the ``name`` of the call it answers (templates that print
    it), and ``content`` never None."""
    names: dict[str, str] = {}
    out: list[dict[str, Any]] = []
    for message in messages:
        item = dict(message)
        calls = item.get("tool_calls")
        if calls:
            converted = []
            for call in calls:
                call = dict(call) if isinstance(call, Mapping) else {}
                function = dict(call.get("function") or {})
                arguments = function.get("arguments")
                if isinstance(arguments, str):
                    try:
                        arguments = json.loads(arguments) if arguments.strip() else {}
                    except ValueError:
                        raise InvalidRequest(
                            f"a tool call's arguments are not JSON: {arguments[:60]!r}") from None
                if isinstance(arguments, Mapping):
                    function["arguments"] = JsonArguments(arguments)
                if call.get("id") and function.get("name"):
                    names[str(call["id"])] = str(function["name"])
                converted.append({**call, "type": "function", "function": function,
                                  "name": function.get("name"), "arguments": function.get("arguments")})
            item["tool_calls"] = converted
        if item.get("role") == "tool" and "name" not in item and item.get("tool_call_id") in names:
            item["name"] = names[item["tool_call_id"]]
        if item.get("content") is None and not calls:  # a call's content stays None (DeepSeek checks it)
            item["content"] = ""
        out.append(item)
    return out


def plain_tool_messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """For chat templates that know no tool turns (Gemma's refuses any role but user and assistant):
    an assistant's calls become its JSON text, a tool result a user turn saying what the call returned,
    and consecutive user turns are joined."""
    out: list[dict[str, Any]] = []
    for message in messages:
        item = dict(message)
        if item.get("tool_calls"):
            calls = [{"name": (c.get("function") or {}).get("name"), "arguments": (c.get("function") or {}).get("arguments")}
                     for c in item["tool_calls"] if isinstance(c, Mapping)]
            for call in calls:
                if isinstance(call["arguments"], str):
                    try:
                        call["arguments"] = json.loads(call["arguments"])
                    except ValueError:
                        pass
            text = item.get("content") or ""
            item = {"role": "assistant",
                    "content": (text + "\n" if text else "") + json.dumps(calls[0] if len(calls) == 1 else calls)}
        elif item.get("role") == "tool":
            name = item.get("name") or item.get("tool_call_id") or "the function"
            item = {"role": "user", "content": f"Result of {name}: {item.get('content') or ''}"}
        if out and item.get("role") == "user" and out[-1].get("role") == "user" and isinstance(item.get("content"), str) \
                and isinstance(out[-1].get("content"), str):
            out[-1] = {**out[-1], "content": out[-1]["content"] + "\n\n" + item["content"]}
            continue
        out.append(item)
    return out


def tools_prompt(request: ToolRequest) -> str:
    """A system-prompt description of the tools, for chat templates that have no place for them: the
    model is told to answer a call as the generic JSON form (family ``json``)."""
    listed = "\n".join(json.dumps(t.openai()["function"], ensure_ascii=False) for t in request.tools
                       if request.choice != "named" or t.name == request.name)
    return (
        "You can call these functions:\n" + listed + "\n\nTo call one, answer only with a JSON object "
        '{"name": FUNCTION_NAME, "arguments": {ARGUMENTS}} (a JSON list of them for several calls); '
        "otherwise answer normally."
    )


def with_tools_prompt(messages: Sequence[Mapping[str, Any]], request: ToolRequest) -> list[dict[str, Any]]:
    """``messages`` with :func:`tools_prompt` added to the system message (a new one first if none)."""
    text = tools_prompt(request)
    out = [dict(m) for m in messages]
    if out and out[0].get("role") == "system":
        first = out[0].get("content") or ""
        if not isinstance(first, str):
            first = "".join(p.get("text", "") for p in first if isinstance(p, Mapping))
        out[0]["content"] = (first + "\n\n" + text) if first else text
        return out
    return [{"role": "system", "content": text}, *out]
