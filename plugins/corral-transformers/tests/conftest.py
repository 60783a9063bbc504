"""Fixtures for this plugin's tests: the plugin host includes corral_transformers (and nothing else that
is installed), so ``run("create", ...)`` reaches its commands; a tiny random-weight Llama written once per
session by ``corral create``, with and without a chat template."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # transformers_factories

from transformers_factories import CHAT_TEMPLATE, copy_model  # noqa: E402

ENGLISH = [
    "The quick brown fox jumps over the lazy dog.",
    "A language model learns to predict the next word in a sentence.",
    "Tokenizers split text into pieces that a model can read.",
    "Small models are cheap to train and quick to test.",
    "She sells sea shells by the sea shore every summer morning.",
    "The library keeps every model on the local disk and never copies a file.",
    "Training a new model from scratch needs a large corpus and a lot of patience.",
    "Numbers such as 2024, 3.14159 and 1,000,000 appear in real text too.",
]
CHINESE = [
    "今天天气很好，我们去公园散步吧。",
    "机器学习模型需要大量的数据来训练。",
    "分词器把文本切成模型能够理解的小片段。",
    "我喜欢在周末读书、写代码和喝茶。",
    "这个模型是从零开始训练的，还没有学会说话。",
    "北京是中国的首都，上海是最大的城市。",
    "小模型训练得快，也方便测试。",
    "语言模型根据前面的词预测下一个词。",
]


@pytest.fixture
def host():
    """A fresh plugin host with the core's built-ins and this plugin, installed as the process-wide one."""
    import corral_transformers

    from corral.testing.hosts import installed_host

    with installed_host(corral_transformers) as fresh:
        yield fresh


@pytest.fixture
def corpus(tmp_path) -> Path:
    """A small English and Chinese corpus, one sentence per line, with enough repetition for merges."""
    rng = random.Random(0)
    lines = []
    for _ in range(60):
        for sentence in ENGLISH:
            words = sentence.split()
            rng.shuffle(words)
            lines.append(" ".join(words))
        for sentence in CHINESE:
            lines.append(sentence)
            chars = list(sentence)
            rng.shuffle(chars)
            lines.append("".join(chars))
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


#: ``corral create`` arguments for a tiny Llama: about 1.6M parameters, loads and generates in a blink.
TINY_CREATE = ("--preset", "free", "--hidden-size", "128", "--layers", "2", "--heads", "4", "--kv-heads", "2",
               "--ffn-size", "256", "--vocab-size", "10000", "--context-length", "256")

@pytest.fixture(scope="session")
def tiny_created(tmp_path_factory) -> Path:
    """A tiny random Llama folder written once per session by ``corral create`` (do not modify it)."""
    from click.testing import CliRunner

    import corral_transformers
    from corral.testing import build_cli
    from corral.testing import build_host, set_host

    root = tmp_path_factory.mktemp("tiny-created")
    set_host(build_host(entry_points=False, plugins=[corral_transformers]))
    try:
        result = CliRunner().invoke(
            build_cli(), ["create", *TINY_CREATE, "--out", str(root / "tiny"), "--json"],
            env={"CORRAL_HOME": str(root / "home")}, catch_exceptions=False,
        )  # fmt: skip
    finally:
        set_host(None)
    assert result.exit_code == 0, result.output
    return root / "tiny"


@pytest.fixture
def tiny_dir(tiny_created, tmp_path) -> Path:
    """A fresh copy of the tiny model, without a chat template."""
    return copy_model(tiny_created, tmp_path / "tiny-llama")


@pytest.fixture
def chat_dir(tiny_created, tmp_path) -> Path:
    """A fresh copy of the tiny model whose tokenizer carries :data:`CHAT_TEMPLATE`."""
    return copy_model(tiny_created, tmp_path / "tiny-chat", chat_template=CHAT_TEMPLATE)


@pytest.fixture
def tiny(library, tiny_dir):
    """The tiny model imported into the test's library."""
    return library.import_path(tiny_dir, name="tiny").model


@pytest.fixture
def tiny_chat(library, chat_dir):
    """The tiny model with a chat template, imported into the test's library."""
    return library.import_path(chat_dir, name="tiny-chat").model

