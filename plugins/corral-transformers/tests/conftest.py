"""Fixtures for this plugin's tests: the plugin host includes corral_transformers (and nothing else that
is installed), so ``run("create", ...)`` reaches its commands."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

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
    from corral.plugins import build_host, set_host

    fresh = build_host(entry_points=False, plugins=[corral_transformers])
    set_host(fresh)
    yield fresh
    set_host(None)


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
