"""Which chat template a model gets; llama.cpp renders it (its Jinja engine, or one of its built-ins).

The order is corral-llamacpp's: the ``chat_template`` setting (a built-in name or Jinja source), the
template inside the GGUF, then a built-in picked from the architecture. A GGUF without a template must not
fall back to a format the model never saw (Gemma answers nothing to ChatML), which is what llama.cpp alone
would do. Built-ins go to llama.cpp by its own names, rendered without Jinja.
"""

from __future__ import annotations

from attrs import frozen

#: Corral's built-in template names and llama.cpp's names for the same formats.
BUILTINS: dict[str, str] = {
    "gemma": "gemma",
    "chatml": "chatml",
    "llama3": "llama3",
    "llama2": "llama2-sys-bos",
    "mistral": "mistral-v3",
    "phi3": "phi3",
    "phi4": "phi4",
}

#: Architectures (GGUF ``general.architecture``) whose chat format is settled by the architecture alone.
ARCHITECTURES: dict[str, str] = {
    "gemma": "gemma", "gemma2": "gemma", "gemma3": "gemma", "gemma3n": "gemma",
    "qwen": "chatml", "qwen2": "chatml", "qwen2moe": "chatml", "qwen3": "chatml", "qwen3moe": "chatml",
    "qwen2vl": "chatml", "qwen3vl": "chatml", "internlm2": "chatml", "minicpm3": "chatml",
    "llama": "llama2", "phi3": "phi3",
}  # fmt: skip


#: The turn markup llama.cpp's built-ins write, for telling their tool-call family (corral.tools.family_of).
MARKUP: dict[str, str] = {
    "gemma": "<start_of_turn>", "chatml": "<|im_start|>", "llama3": "<|start_header_id|>", "llama2": "[INST]",
    "mistral": "[INST]", "phi3": "<|user|>", "phi4": "<|im_start|>",
}  # fmt: skip


@frozen
class ChatTemplate:
    """The template a load uses: its name, what llama.cpp is given, whether that is Jinja, and why.

    ``text`` is what Corral reads of it: the Jinja source (the setting's or the GGUF's), or for a
    built-in the markup it writes; it says which tool-call family and switches the template has.
    """

    name: str
    source: str
    jinja: bool
    origin: str
    text: str = ""


def choose_template(*, override: str | None, embedded: str | None, architecture: str | None) -> ChatTemplate:
    """Pick the chat template (see the module docstring for the order).

    :param override: the ``chat_template`` setting: a built-in name or Jinja source.
    :param embedded: the GGUF's ``tokenizer.chat_template``.
    """
    if override and override.strip():
        name = override.strip().lower()
        if name in BUILTINS:
            return ChatTemplate(name, BUILTINS[name], False, "chat_template setting", MARKUP[name])
        return ChatTemplate("custom", override, True, "chat_template setting", override)
    if embedded:
        return ChatTemplate("gguf", "", True, "the GGUF's tokenizer.chat_template", embedded)
    arch = (architecture or "").lower()
    name = ARCHITECTURES.get(arch, "chatml")
    why = f"built-in for architecture {arch}" if arch in ARCHITECTURES else f"default for architecture {arch or '?'}"
    return ChatTemplate(name, BUILTINS[name], False, why, MARKUP[name])
