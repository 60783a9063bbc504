"""Categories and formats as plugins declare them.

A category says what a model is for and which tasks a loaded model of it answers; categories that share
a ``group`` are exclusive (one loaded model for the whole group: chat, multimodal and text-generation
share "language"). A format names how weights are stored. The core's own are registered by its built-in
plugin (:mod:`corral.builtin`) through the same hooks a third-party package uses (``register_categories``,
``register_formats``); the plugin host (``host.category(name)``, ``host.tasks(name)``) answers from them.
"""

from __future__ import annotations

import re

from attrs import field, frozen

from corral.records import Category, Format

_NAME = re.compile(r"^[a-z][a-z0-9-]{0,39}$")
_TASK = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


def _check_name(instance, attribute, value) -> None:
    if not isinstance(value, str) or not _NAME.match(value):
        raise ValueError(f"{attribute.name} {value!r}: use lowercase letters, digits and dashes")


def _check_tasks(instance, attribute, value) -> None:
    for task in value:
        if not _TASK.match(task) or task.startswith("_"):
            raise ValueError(f"task {task!r}: use a lowercase Python name (a LoadedModel method)")


@frozen
class CategorySpec:
    """A kind of model: its name, the tasks (``LoadedModel`` method names) it answers, its load group."""

    name: str = field(validator=_check_name)
    tasks: frozenset[str] = field(converter=frozenset, validator=_check_tasks)
    #: Categories with the same group are exclusive: loading one unloads the other. None: its own group.
    group: str | None = None
    description: str = ""

    @property
    def category(self) -> Category:
        return Category(self.name)

    @property
    def load_group(self) -> str:
        return self.group or self.name


@frozen
class FormatSpec:
    """A way of storing weights on disk; a plugin that adds one also detects it (``detect_model``)."""

    name: str = field(validator=_check_name)
    description: str = ""

    @property
    def format(self) -> Format:
        return Format(self.name)


#: The core's categories, registered by :mod:`corral.builtin`.
BUILTIN_CATEGORIES = (
    CategorySpec("chat", {"chat", "complete"}, group="language", description="chat LLMs"),
    CategorySpec("multimodal", {"chat", "complete"}, group="language", description="chat LLMs that see images"),
    CategorySpec("text-generation", {"chat", "complete"}, group="language", description="transformers LLMs"),
    CategorySpec("embedding", {"embed"}, description="text embedding models"),
    CategorySpec("rerank", {"rerank"}, description="cross-encoder rerankers"),
    CategorySpec("image", {"imagine"}, description="image and video generation"),
    CategorySpec("tts", {"speak"}, description="text to speech"),
)

#: The core's formats, registered by :mod:`corral.builtin`.
BUILTIN_FORMATS = (
    FormatSpec("gguf", "llama.cpp's single-file format"),
    FormatSpec("safetensors", "safetensors weights"),
    FormatSpec("pytorch-pickle", "torch pickle checkpoints (.bin, .pt, .ckpt), loaded weights-only"),
    FormatSpec("onnx", "ONNX graphs"),
    FormatSpec("diffusers-dir", "a diffusers pipeline folder"),
    FormatSpec("hf-dir", "a Hugging Face model folder"),
    FormatSpec("kokoro", "a Kokoro speech model folder"),
)

#: What each built-in category can be asked to do (kept for one release; ask the plugin host instead).
TASKS = {spec.category: spec.tasks for spec in BUILTIN_CATEGORIES}
