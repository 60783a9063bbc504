"""An example for every command's ``--help``, kept in one table so each one is easy to check and to keep
up to date. A command whose own help already shows ``Examples:`` keeps its own; the group adds these as
the help's epilog when it loads a command (:func:`add_examples`)."""

from __future__ import annotations

import click

#: Command path (``"lora add"``) -> example command lines.
EXAMPLES: dict[str, tuple[str, ...]] = {
    "import": ("corral import ~/models/gemma-3-270m-q4_k_m.gguf --name gemma3",
               "corral import ~/models/sdxl --template sd_official --vae ~/models/sdxl-vae.safetensors"),
    "scan": ("corral scan ~/models --dry-run", "corral scan --ollama"),
    "ls": ("corral ls", "corral ls --category embedding --json"),
    "show": ("corral show gemma3", "corral show gemma3 --json"),
    "rm": ("corral rm gemma3 --yes",),
    "cp": ("corral cp gemma3 gemma3-terse",),
    "run": ("corral run gemma3", "corral run smollm2-135m-instruct --pull"),
    "lora add": ("corral lora add gemma3 ~/models/my-lora.gguf --weight 0.8",),
    "lora ls": ("corral lora ls gemma3",),
    "lora set": ("corral lora set my-lora --weight 0.6",),
    "lora rm": ("corral lora rm my-lora",),
    "component add": ("corral component add llava-7b mmproj ~/models/mmproj-f16.gguf",),
    "component rm": ("corral component rm llava-7b mmproj",),
    "plugins": ("corral plugins", "corral plugins --json"),
    "chat": ('corral chat gemma3 "What is the capital of France?" --max-tokens 40', "corral chat gemma3"),
    "embed": ('corral embed minilm "first text" "second text"', "cat lines.txt | corral embed minilm -"),
    "rerank": ('corral rerank bge-reranker "what is corral?" "a model library" "a fence"',),
    "imagine": ('corral imagine sdxl "a lighthouse at dawn" --out lighthouse.png --steps 20',),
    "speak": ('corral speak kokoro "Hello there." --voice af_heart --out hello.wav',),
    "search": ("corral search gemma --category chat --limit 5",),
    "files": ("corral files ggml-org/gemma-3-270m-GGUF", "corral files ggml-org/gemma-3-270m-GGUF --offline"),
    "pull": ("corral pull ggml-org/gemma-3-270m-GGUF --quant Q4_K_M --name gemma3",),
    "serve": ("corral serve", "corral serve --port 8421 --api-key secret", "corral serve --status"),
    "stop": ("corral stop",),
    "load": ("corral load gemma3 --n-ctx 8192",),
    "unload": ("corral unload gemma3", "corral unload --all"),
    "ps": ("corral ps", "corral ps --json"),
    "env": ("corral env", "corral env --json"),
    "monitor": ("corral monitor", "corral monitor --once --json"),
    "fit": ("corral fit gemma3 --n-ctx 8192",),
    "recommend": ("corral recommend --memory 8 --category chat",),
    "catalog ls": ("corral catalog ls --category embedding",),
    "catalog show": ("corral catalog show gemma-3-270m-it --n-ctx 8192",),
    "catalog add": ("corral catalog add my-models.json",),
    "catalog rm": ("corral catalog rm my-model",),
    "manifest show": ("corral manifest show gemma3",),
    "manifest sync": ("corral manifest sync", "corral manifest sync gemma3 --fast"),
    "clean preview": ("corral clean preview --unused-days 30", "corral clean preview --missing"),
    "clean apply": ("corral clean apply --missing --yes",),
    "clean hf-cache": ("corral clean hf-cache --scan",),
    "plugin new": ("corral plugin new my-backend --out ./corral-my-backend",),
    "keys add": ("corral keys add laptop --scope inference",),
    "keys ls": ("corral keys ls",),
    "keys rm": ("corral keys rm laptop",),
    "create": ("corral create --preset small --out ./small-llama --dry-run",),
    "tokenizer train": ("corral tokenizer train corpus.txt --type bpe --vocab-size 16000 --out ./tokenizer",),
    "ui": ("corral ui", "corral ui --no-browser"),
}


def has_example(command: click.Command) -> bool:
    return "Examples:" in (command.help or "") or "Examples:" in (command.epilog or "")


def add_examples(command: click.Command, path: str = "") -> None:
    """Give ``command`` (and, for a group, each of its subcommands) its examples as the help's epilog."""
    path = f"{path} {command.name}".strip()
    lines = EXAMPLES.get(path)
    if lines and not has_example(command):
        # \b keeps click from re-wrapping the lines.
        body = "\n".join(f"  {line}" for line in lines)
        command.epilog = f"\b\nExamples:\n{body}" + (f"\n\n{command.epilog}" if command.epilog else "")
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            add_examples(sub, path)
