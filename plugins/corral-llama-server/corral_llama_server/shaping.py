"""Tools and reasoning through llama.cpp's server engine, behind Corral's own interfaces (corral.tools).

Both GGUF drivers must answer one request the same way, so the conversation is prepared as
corral-llamacpp prepares it: tool turns written as plain text for templates that know none (Gemma's),
the tools described in the system message for templates with no place for them (or handed to a Jinja
template as its ``tools``), a call that ``tool_choice`` forces held to the JSON schema of a call
(llama.cpp's grammar), and the thinking switch as the template's ``enable_thinking``. llama.cpp
renders the template and decodes; it is asked for the raw text (``reasoning_format: none``), which
Corral's parsers split into reasoning, content and tool calls, whole or streamed.

llama.cpp's own tool-call parsers are not used: for a template without tools (Gemma's) they refuse
tools or answer in a generic format of their own, which would make this driver's answers differ from
corral-llamacpp's.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from attrs import frozen

from corral.api import InvalidRequest
from corral.api import (
    AnswerShape,
    OutputFormat,
    ToolRequest,
    call_schema,
    family_of,
    plain_tool_messages,
    read_effort,
    read_tools,
    template_messages,
    template_switch,
    thinking_off,
    with_tools_prompt,
)

from corral_llama_server.templates import ChatTemplate

#: Request fields of a chat beyond sampling, log-probabilities and response_format.
FEATURES = ("tools", "tool_choice", "parallel_tool_calls", "reasoning_effort")
#: How llama.cpp's JSON grammar (llguidance) writes a forced call: ``{"name": "f", "arguments": {"a": 1}}``,
#: spaced as models write JSON. Left free, its whitespace rules differ from llama-cpp-python's grammar and
#: a weak model wanders into indented JSON there, so the two drivers would make different calls.
CALL_LAYOUT = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}


@frozen
class Asked:
    """A request's tools and reasoning effort, checked; ``rest`` is every other parameter."""

    tools: ToolRequest | None
    effort: str | None
    rest: Mapping[str, Any]


def read_asked(params: Mapping[str, Any]) -> Asked:
    """The checked tools (OpenAI's shapes) and ``reasoning_effort`` of request ``params``."""
    return Asked(
        tools=read_tools(params.get("tools"), params.get("tool_choice"), params.get("parallel_tool_calls")),
        effort=read_effort(params.get("reasoning_effort")),
        rest={k: v for k, v in params.items() if k not in FEATURES},
    )


@frozen
class Prepared:
    """What llama.cpp is given for one chat, and how its answer is read.

    :param messages: the conversation as the template renders it.
    :param kwargs: the template's extra variables (``tools``, ``enable_thinking``).
    :param schema: the JSON schema decoding follows (None: free).
    """

    messages: list[dict[str, Any]]
    kwargs: dict[str, Any]
    schema: dict[str, Any] | None
    shape: AnswerShape

    @property
    def shaped(self) -> bool:
        """Whether the answer needs Corral's parsers (tool calls or a thought), or is plain text."""
        return self.shape.tools is not None or self.shape.reasoning


def prepare(
    messages: Sequence[Mapping[str, Any]],
    asked: Asked,
    template: ChatTemplate,
    settings: Mapping[str, Any],
    answer_format: OutputFormat,
) -> Prepared:
    """The messages, template variables, schema and answer shape of one chat (corral-llamacpp's rules)."""
    source = template.text
    tools = asked.tools if asked.tools is not None and asked.tools.choice != "none" else None
    kwargs: dict[str, Any] = {}
    family = family_of(source)
    if "tool" not in source:  # a template that knows no tool turns (Gemma's)
        messages = plain_tool_messages(template_messages(messages))
    else:  # llama.cpp reads OpenAI's shapes itself
        messages = [dict(m) for m in messages]
    if tools is not None:
        if template.jinja and "tools" in source:
            kwargs["tools"] = tools.template_tools()
        else:  # a template with no place for tools: describe them in the system message
            messages = with_tools_prompt(messages, tools)
    if template.jinja and template_switch(source):
        # llama.cpp sets enable_thinking for a template that reads it; say it for every request.
        kwargs["enable_thinking"] = not thinking_off(settings, asked.effort)
    schema = None
    if tools is not None and tools.forced:
        if answer_format.constrained:
            raise InvalidRequest("response_format cannot be combined with a tool_choice that forces a call")
        schema, family = {**call_schema(tools), "x-guidance": CALL_LAYOUT}, "json"
    elif answer_format.constrained:
        schema = answer_format.json_schema()
    # llama.cpp gives the raw text, a thought its prompt opened included, so no thought is "opened" here.
    shape = AnswerShape(family=family, tools=tools, reasoning="</think>" in source and schema is None)
    return Prepared(messages=list(messages), kwargs=kwargs, schema=schema, shape=shape)


def reason(generated: str, shaped: str | None) -> str:
    """``length`` when the answer was cut short (even in the middle of a call), else ``tool_calls``
    when it made calls, else why generation stopped."""
    return "length" if generated == "length" else shaped or generated
