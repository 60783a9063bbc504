"""Protocol-neutral pieces of what clients ask of a text model: tools and tool calls, structured
output, reasoning, streamed deltas.

Every protocol surface (OpenAI chat completions, Ollama's ``/api/chat``, Anthropic messages, OpenAI
responses) reads its own request shape into these records, and every text driver uses the same parsers,
so a model answers tools and schemas the same way whichever surface asked. Plugins reach these names
through :mod:`corral.api`.
"""

from corral.tools.answer import AnswerShape, AnswerStream, Shaped
from corral.tools.calls import (
    Tool,
    ToolCall,
    ToolRequest,
    call_id,
    call_schema,
    plain_tool_messages,
    read_tools,
    template_messages,
    tools_prompt,
    with_tools_prompt,
)
from corral.tools.parsers import FAMILIES, Parsed, family_of, find_calls, parse_tool_calls
from corral.tools.reasoning import (
    THINKING,
    ReasoningStream,
    opens_thought,
    read_effort,
    split_reasoning,
    template_switch,
    thinking_off,
)
from corral.tools.schema import OutputFormat, check_schema, parse_json, read_response_format
from corral.tools.stream import Delta, TokenLogprob, ToolCallDelta, ToolCallStream

__all__ = [
    "AnswerShape", "AnswerStream", "Delta", "FAMILIES", "OutputFormat", "Parsed", "ReasoningStream", "Shaped",
    "THINKING", "TokenLogprob", "Tool", "ToolCall", "ToolCallDelta", "ToolCallStream", "ToolRequest", "call_id",
    "call_schema", "check_schema", "family_of", "find_calls", "opens_thought", "parse_json", "parse_tool_calls",
    "read_effort", "read_response_format", "read_tools", "split_reasoning", "template_messages",
    "template_switch", "thinking_off", "tools_prompt", "with_tools_prompt", "plain_tool_messages",
]  # fmt: skip
