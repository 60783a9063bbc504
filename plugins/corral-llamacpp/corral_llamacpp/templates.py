"""Chat templates: which one a model gets, and rendering it in a Jinja sandbox.

The order of choice is: the user's ``chat_template`` setting (a built-in name or a Jinja template), the
template inside the GGUF (``tokenizer.chat_template``), then a built-in template picked from the
architecture and, where the architecture does not settle it (``llama`` covers Llama 2, Llama 3, Mistral
and many fine-tunes), from the special tokens the vocabulary has. A GGUF without a template must not fall
back to a format the model never saw: Gemma answers an empty string to ``[INST] ... [/INST]``.

Templates come from model files, which are untrusted, so they render in an
``ImmutableSandboxedEnvironment`` with the same options as Hugging Face transformers (trim_blocks,
lstrip_blocks, loop controls, ``tojson``, ``raise_exception``, ``strftime_now``).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Callable, Mapping, Sequence

from attrs import frozen

from corral.api import CorralError, InvalidSetting

# Joins the text parts of OpenAI-style list content; image parts were turned into text (the projector's
# marker) before rendering, or refused.
_TEXT = (
    "{%- macro text(content) -%}"
    "{%- if content is string -%}{{ content }}"
    "{%- elif content -%}{%- for part in content -%}"
    "{%- if part['type'] == 'text' -%}{{ part['text'] }}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{%- endmacro -%}\n"
)

_SYSTEM_FIRST = (
    "{%- if messages and messages[0]['role'] == 'system' -%}"
    "{%- set system = text(messages[0]['content']) -%}{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}{%- set system = '' -%}{%- set loop_messages = messages -%}{%- endif -%}\n"
)


@frozen
class Builtin:
    """A built-in template: Jinja source, and the strings (special tokens) that end the model's turn."""

    source: str
    stops: tuple[str, ...]


BUILTINS: dict[str, Builtin] = {
    "gemma": Builtin(
        _TEXT + _SYSTEM_FIRST + "{{ bos_token }}"
        "{%- for message in loop_messages -%}"
        "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
        "{{ '<start_of_turn>' + role + '\n' }}"
        "{%- if loop.first and system -%}{{ system + '\n\n' }}{%- endif -%}"
        "{{ text(message['content']) | trim }}{{ '<end_of_turn>\n' }}"
        "{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}",
        ("<end_of_turn>", "<start_of_turn>"),
    ),
    "chatml": Builtin(
        _TEXT + "{%- for message in messages -%}"
        "{{ '<|im_start|>' + message['role'] + '\n' }}{{ text(message['content']) }}{{ '<|im_end|>\n' }}"
        "{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\n' }}{%- endif -%}",
        ("<|im_end|>", "<|im_start|>"),
    ),
    "llama3": Builtin(
        _TEXT + "{{ bos_token }}{%- for message in messages -%}"
        "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' }}"
        "{{ text(message['content']) | trim }}{{ '<|eot_id|>' }}"
        "{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{%- endif -%}",
        ("<|eot_id|>", "<|eom_id|>", "<|start_header_id|>"),
    ),
    "llama2": Builtin(
        _TEXT + _SYSTEM_FIRST + "{%- for message in loop_messages -%}"
        "{%- if message['role'] == 'user' -%}"
        "{{ bos_token + '[INST] ' }}"
        "{%- if loop.first and system -%}{{ '<<SYS>>\n' + system + '\n<</SYS>>\n\n' }}{%- endif -%}"
        "{{ text(message['content']) | trim }}{{ ' [/INST]' }}"
        "{%- elif message['role'] == 'assistant' -%}"
        "{{ ' ' }}{{ text(message['content']) | trim }}{{ ' ' + eos_token }}"
        "{%- endif -%}"
        "{%- endfor -%}",
        ("[INST]",),
    ),
    "mistral": Builtin(
        _TEXT + _SYSTEM_FIRST + "{{ bos_token }}{%- for message in loop_messages -%}"
        "{%- if message['role'] == 'user' -%}"
        "{{ '[INST] ' }}{%- if loop.first and system -%}{{ system + '\n\n' }}{%- endif -%}"
        "{{ text(message['content']) | trim }}{{ '[/INST]' }}"
        "{%- elif message['role'] == 'assistant' -%}"
        "{{ text(message['content']) | trim }}{{ eos_token }}"
        "{%- endif -%}"
        "{%- endfor -%}",
        ("[INST]",),
    ),
    "phi3": Builtin(
        _TEXT + "{%- for message in messages -%}"
        "{{ '<|' + message['role'] + '|>\n' }}{{ text(message['content']) }}{{ '<|end|>\n' }}"
        "{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{ '<|assistant|>\n' }}{%- endif -%}",
        ("<|end|>", "<|user|>", "<|endoftext|>"),
    ),
    "phi4": Builtin(
        _TEXT + "{%- for message in messages -%}"
        "{{ '<|im_start|>' + message['role'] + '<|im_sep|>' }}{{ text(message['content']) }}{{ '<|im_end|>' }}"
        "{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant<|im_sep|>' }}{%- endif -%}",
        ("<|im_end|>", "<|im_start|>"),
    ),
}

#: Architectures (GGUF ``general.architecture``) whose chat format is settled by the architecture alone.
ARCHITECTURES: dict[str, str] = {
    "gemma": "gemma", "gemma2": "gemma", "gemma3": "gemma", "gemma3n": "gemma",
    "qwen": "chatml", "qwen2": "chatml", "qwen2moe": "chatml", "qwen3": "chatml", "qwen3moe": "chatml",
    "qwen2vl": "chatml", "qwen3vl": "chatml", "internlm2": "chatml", "minicpm3": "chatml",
}  # fmt: skip

#: Special tokens that give a vocabulary's chat format away, checked in this order (Phi-4 has both
#: ``<|im_sep|>`` and ``<|im_start|>``, so it comes before ChatML).
TOKEN_HINTS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("<start_of_turn>", "<end_of_turn>"), "gemma"),
    (("<|im_start|>", "<|im_sep|>"), "phi4"),
    (("<|im_start|>", "<|im_end|>"), "chatml"),
    (("<|start_header_id|>", "<|eot_id|>"), "llama3"),
    (("<|user|>", "<|end|>"), "phi3"),
    (("[INST]", "[/INST]"), "mistral"),
)


@frozen
class ChatTemplate:
    """The template a loaded model uses: its name, Jinja source, turn-ending strings and why it was chosen."""

    name: str
    source: str
    stops: tuple[str, ...] = ()
    origin: str = ""


def choose_template(
    *,
    override: str | None,
    embedded: str | None,
    architecture: str | None,
    has_special_token: Callable[[str], bool],
    model_name: str,
) -> ChatTemplate:
    """Pick the chat template for a model (see the module docstring for the order).

    :param override: the ``chat_template`` setting: a built-in name or Jinja source.
    :param embedded: the GGUF's ``tokenizer.chat_template``.
    :param has_special_token: tells whether the vocabulary holds a text as one special token.
    """
    if override:
        builtin = BUILTINS.get(override.strip().lower())
        if builtin is not None:
            return ChatTemplate(override.strip().lower(), builtin.source, builtin.stops, "chat_template setting")
        compile_template(override, f"{model_name}: the chat_template setting", InvalidSetting)
        return ChatTemplate("custom", override, stops_in(override), "chat_template setting")
    if embedded:
        return ChatTemplate("gguf", embedded, stops_in(embedded), "the GGUF's tokenizer.chat_template")
    arch = (architecture or "").lower()
    if arch in ARCHITECTURES:
        name = ARCHITECTURES[arch]
        return ChatTemplate(name, BUILTINS[name].source, BUILTINS[name].stops, f"built-in for architecture {arch}")
    for tokens, name in TOKEN_HINTS:
        if all(has_special_token(t) for t in tokens):
            builtin = BUILTINS[name]
            return ChatTemplate(name, builtin.source, builtin.stops, f"built-in, the vocabulary has {tokens[0]}")
    # Nothing in the file says: plain Llama 2 for the llama architecture, ChatML (the most common format
    # of fine-tunes) for the rest.
    name = "llama2" if arch == "llama" else "chatml"
    return ChatTemplate(name, BUILTINS[name].source, BUILTINS[name].stops, f"default for architecture {arch or '?'}")


def stops_in(source: str) -> tuple[str, ...]:
    """The turn-ending tokens of every built-in format whose markers a template's source writes.

    A Gemma template that writes ``<start_of_turn>`` gets Gemma's stops, a ChatML one ``<|im_end|>``...
    """
    found: dict[str, None] = {}
    for tokens, name in TOKEN_HINTS:
        if all(t in source for t in tokens):
            found.update(dict.fromkeys(BUILTINS[name].stops))
    return tuple(found)


def _environment():
    import jinja2
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class GenerationTag(jinja2.ext.Extension):
        """Hugging Face's ``{% generation %}`` block (marks assistant text for training): render its body."""

        tags = {"generation"}

        def parse(self, parser):
            next(parser.stream)
            return parser.parse_statements(("name:endgeneration",), drop_needle=True)

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols, GenerationTag]
    )
    env.filters["tojson"] = _tojson
    return env


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None, separators=None, sort_keys=False):
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def compile_template(source: str, what: str, error: type[CorralError] = CorralError):
    """Compile Jinja ``source`` in the sandbox; a syntax error becomes ``error`` naming ``what``."""
    import jinja2

    try:
        return _environment().from_string(source)
    except jinja2.TemplateError as exc:
        raise error(f"{what} is not a valid Jinja template: {exc}") from None


def _raise_exception(message: str) -> None:
    raise _TemplateRefused(message)


class _TemplateRefused(Exception):
    pass


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


class Renderer:
    """A compiled chat template that turns messages into the prompt text."""

    def __init__(self, template: ChatTemplate, *, bos_token: str, eos_token: str, model_name: str) -> None:
        self.template = template
        self.model_name = model_name
        self.bos_token = bos_token
        self.eos_token = eos_token
        self._compiled = compile_template(template.source, f"{model_name}: the chat template ({template.origin})")

    def render(self, messages: Sequence[Mapping[str, Any]], **extra: Any) -> str:
        """The prompt for ``messages`` with the assistant's turn opened; a template's refusal is a CorralError."""
        import jinja2
        from jinja2.sandbox import SecurityError

        try:
            return self._compiled.render(
                messages=[dict(m) for m in messages],
                add_generation_prompt=True,
                bos_token=self.bos_token,
                eos_token=self.eos_token,
                raise_exception=_raise_exception,
                strftime_now=_strftime_now,
                **extra,
            )
        except _TemplateRefused as exc:
            raise CorralError(f"{self.model_name}: the chat template refused the conversation: {exc}") from None
        except SecurityError as exc:
            raise CorralError(f"{self.model_name}: the chat template tried something unsafe ({exc})") from None
        except (jinja2.TemplateError, TypeError, KeyError, IndexError, AttributeError) as exc:
            raise CorralError(
                f"{self.model_name}: the chat template ({self.template.origin}) failed on this conversation "
                f"({type(exc).__name__}: {exc}); set another: corral settings {self.model_name} "
                "--set chat_template=NAME"
            ) from None
