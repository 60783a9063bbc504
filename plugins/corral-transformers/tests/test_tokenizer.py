"""`corral tokenizer train` (SentencePiece unigram and byte-level BPE) and the default tokenizer of
`corral create` (cl100k_base cut to the vocab size), through the real libraries."""

from __future__ import annotations

import random

import pytest
from corral.testing.cli import as_json, assert_clean_error

ENGLISH_LINE = "A small model learns to read the next word, quickly."
CHINESE_LINE = "今天我们训练一个小模型，它学会了预测下一个词。"


def train(run, corpus, out, kind, vocab=400, *extra):
    return run("tokenizer", "train", corpus, "--type", kind, "--vocab-size", vocab, "--out", out, *extra)


def round_trip(directory):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(directory))
    for line in (ENGLISH_LINE, CHINESE_LINE):
        ids = tokenizer(line)["input_ids"]
        assert tokenizer.decode(ids) == line
        assert len(ids) < len(line.encode("utf-8")), "no merges were learned"
    return tokenizer


def test_bpe_round_trips_english_and_chinese(run, corpus, tmp_path):
    out = tmp_path / "bpe"
    result = as_json(train(run, corpus, out, "bpe", 400, "--any-vocab-size", "--json"))
    assert result["type"] == "bpe" and result["vocab_size"] == 400
    assert {"tokenizer.json", "tokenizer_config.json"} <= set(result["files"])
    tokenizer = round_trip(out)
    assert len(tokenizer) == 400
    assert tokenizer.eos_token == "<|endoftext|>" and tokenizer.pad_token == "<|pad|>"
    # Byte-level: a character the corpus never had still round-trips.
    assert tokenizer.decode(tokenizer("龘 🦙")["input_ids"]) == "龘 🦙"


def test_sentencepiece_round_trips_and_matches_sentencepiece(run, corpus, tmp_path):
    import sentencepiece

    out = tmp_path / "spm"
    result = as_json(train(run, corpus, out, "sentencepiece", 600, "--any-vocab-size", "--json"))
    assert result["vocab_size"] == 600
    assert "tokenizer.model" in result["files"]
    tokenizer = round_trip(out)
    assert (tokenizer.unk_token, tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token) == (
        "<unk>", "<s>", "</s>", "<pad>")
    processor = sentencepiece.SentencePieceProcessor(model_file=str(out / "tokenizer.model"))
    for line in (ENGLISH_LINE, CHINESE_LINE, "  two  spaces ", "全角，标点！", "龘 unseen"):
        ids = tokenizer(line)["input_ids"]
        assert ids == processor.encode(line), line
        assert tokenizer.decode(ids) == line


def test_bpe_in_range_on_a_big_enough_corpus(run, tmp_path):
    """Without the test option: 8,000 tokens from a corpus with enough distinct words."""
    rng = random.Random(1)
    syllables = [a + b for a in "bcdfghklmnprstvz" for b in ("a", "e", "i", "o", "u", "ai", "ou")]
    words = list({"".join(rng.choice(syllables) for _ in range(rng.randint(2, 4))) for _ in range(12000)})
    lines = [" ".join(rng.choice(words) for _ in range(12)) for _ in range(6000)]
    corpus = tmp_path / "words.txt"
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "bpe8k"
    result = train(run, corpus, out, "bpe", 8000)
    assert result.exit_code == 0, result.output + result.stderr
    assert "recommended range" in result.stderr
    from transformers import AutoTokenizer

    assert len(AutoTokenizer.from_pretrained(str(out))) == 8000


@pytest.mark.parametrize("vocab", [7999, 50001])
def test_vocab_size_outside_range_refused(run, corpus, tmp_path, vocab):
    out = tmp_path / "tok"
    assert_clean_error(train(run, corpus, out, "bpe", vocab), f"{vocab:,}", "8,000–50,000")
    assert not out.exists()


@pytest.mark.parametrize("kind,fragment", [("bpe", "too small for a 20,000-token BPE"),
                                           ("sentencepiece", "could not train a 20,000-token")])
def test_corpus_too_small_refused(run, corpus, tmp_path, kind, fragment):
    out = tmp_path / "tok"
    assert_clean_error(train(run, corpus, out, kind, 20000), fragment)
    assert not out.exists()


def test_bad_corpus_refused(run, tmp_path):
    out = tmp_path / "tok"
    assert_clean_error(train(run, tmp_path / "missing.txt", out, "bpe", 16000), "no such corpus file")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n  \n")
    assert_clean_error(train(run, empty, out, "bpe", 16000), "holds no text")
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("caf\xe9 cr\xe8me\n".encode("latin-1"))
    assert_clean_error(train(run, latin1, out, "bpe", 16000), "not UTF-8")
    assert not out.exists()


def test_non_empty_out_refused_without_force(run, corpus, tmp_path):
    out = tmp_path / "tok"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    assert_clean_error(train(run, corpus, out, "bpe", 400, "--any-vocab-size"), "is not empty", "--force")
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    as_json(train(run, corpus, out, "bpe", 400, "--any-vocab-size", "--force", "--json"))
    assert (out / "notes.txt").read_text() == "keep me"
    round_trip(out)


# --- the default tokenizer ---------------------------------------------------------------------------

SAMPLE = (
    "def f(x):\n    return x**2  # square\n\nThe model's weights aren't trained; it'll learn.\n"
    "今天天气很好，我们去公园散步吧。日本語のテキストも大丈夫です。\n"
    "Ünïcödé   spaces\t\ttabs 1234567 3.14 🦙🦙\r\n end"
)


def reference_ids(text, ranks):
    """tiktoken's algorithm (puretiktoken's pure-Python copy) over the given ranks."""
    import puretiktoken
    from puretiktoken._bpe import byte_pair_encode

    encoding = puretiktoken.get_encoding("cl100k_base")
    ids, start = [], 0
    for match in encoding._re.finditer(puretiktoken._to_codes(text)):
        piece = text[start:match.end()].encode("utf-8")
        start = match.end()
        ids.extend([ranks[piece]] if piece in ranks else byte_pair_encode(piece, ranks))
    return ids


def test_default_tokenizer_is_exactly_cl100k():
    import puretiktoken

    from corral_transformers import default_tokenizer

    full = default_tokenizer.build(default_tokenizer.FULL_RANKS + 2)
    ids = full.encode(SAMPLE).ids
    assert ids == puretiktoken.get_encoding("cl100k_base").encode(SAMPLE)
    assert full.decode(ids) == SAMPLE


def test_default_tokenizer_cut_to_vocab_size_is_consistent_bpe():
    from corral_transformers import default_tokenizer

    tokenizer = default_tokenizer.build(10_000)
    assert tokenizer.get_vocab_size() == 10_000
    assert tokenizer.token_to_id("<|endoftext|>") == 9_998 and tokenizer.token_to_id("<|pad|>") == 9_999
    kept = {token: rank for token, rank in default_tokenizer.load_ranks().items() if rank < 9_998}
    ids = tokenizer.encode(SAMPLE).ids
    assert ids == reference_ids(SAMPLE, kept)
    assert max(ids) < 9_998 and tokenizer.decode(ids) == SAMPLE


def test_byte_map_is_gpt2s():
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    from corral_transformers.default_tokenizer import byte_to_unicode

    assert byte_to_unicode() == bytes_to_unicode()
