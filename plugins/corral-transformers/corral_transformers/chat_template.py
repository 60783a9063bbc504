"""Chat prompts: OpenAI-style messages checked, then rendered with the tokenizer's chat template (or the
``chat_template`` setting).

transformers renders templates in Jinja's ``ImmutableSandboxedEnvironment``, which is what templates from
untrusted model folders need. A tokenizer without a template gets no guessed format: a model answers
nonsense to a layout it never saw, so chat is refused with what to do instead.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from corral.api import Unsupported
from corral.api import CorralError



def text_messages(messages: Sequence[Mapping[str, Any]], model_name: str) -> list[dict[str, str]]:
    """``messages`` with string contents: text parts of list contents joined, anything else refused."""
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
        raise CorralError("messages must be a list of {role, content} objects")
    if not messages:
        raise CorralError("a chat needs at least one message")
    out = []
    for message in messages:
        if not isinstance(message, Mapping) or not isinstance(message.get("role"), str):
            raise CorralError(f"each message needs a role and a content, got {message!r}")
        content = message.get("content")
        if content is None:
            content = ""
        elif isinstance(content, Sequence) and not isinstance(content, str):
            texts = []
            for part in content:
                kind = part.get("type") if isinstance(part, Mapping) else None
                if kind == "text" and isinstance(part.get("text"), str):
                    texts.append(part["text"])
                elif kind in ("image_url", "image", "input_image", "input_audio"):
                    raise Unsupported(f"{model_name} is a text model; it cannot read {kind} parts")
                else:
                    raise CorralError(f"a message content part must be {{type: text, text: ...}}, got {part!r}")
            content = "".join(texts)
        elif not isinstance(content, str):
            raise CorralError(f"a message content must be a string or a list of parts, got {content!r}")
        # Tool turns keep what templates read: an assistant's tool_calls, a result's tool_call_id / name.
        extra = {k: message[k] for k in ("tool_calls", "tool_call_id", "name") if k in message}
        out.append({"role": message["role"], "content": content, **extra})
    return out


def has_template(tokenizer: Any, override: str | None) -> bool:
    return bool(override or getattr(tokenizer, "chat_template", None))


def render(tokenizer: Any, messages: Sequence[Mapping[str, Any]], *, override: str | None, model_name: str,
           tools: Sequence[Mapping[str, Any]] | None = None, **variables: Any) -> str:
    """The prompt text for ``messages``, ending where the assistant's answer begins; ``tools`` (OpenAI
    shape) and other ``variables`` (``enable_thinking``) go to the template as Hugging Face passes them."""
    from corral.api import template_messages

    if not has_template(tokenizer, override):
        raise Unsupported(
            f"{model_name}: its tokenizer has no chat template, so Corral cannot tell how this model lays out "
            f"a conversation; set one (corral settings {model_name} --set chat_template=PATH.jinja, or the "
            "Jinja text itself), or send a plain completion instead"
        )
    chat = template_messages(text_messages(messages, model_name))
    try:
        prompt = tokenizer.apply_chat_template(
            chat, chat_template=override, tokenize=False, add_generation_prompt=True, tools=tools or None,
            **variables,
        )
    except CorralError:
        raise
    except Exception as exc:  # jinja2.TemplateError, or raise_exception() inside the template
        why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        source = "the chat_template setting" if override else "the tokenizer's chat template"
        raise CorralError(f"{model_name}: {source} could not render these messages ({why})") from None
    if not isinstance(prompt, str):  # some versions hand back a list for a batch of one
        prompt = prompt[0]
    return prompt
