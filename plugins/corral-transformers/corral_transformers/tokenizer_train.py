"""``corral tokenizer train``: a SentencePiece unigram or a byte-level BPE tokenizer from a text corpus.

Both are lossless: decoding the ids of a line gives the line back, Chinese, Japanese and emoji included.

* **sentencepiece**: the unigram model (good for Chinese and Japanese, which have no spaces between
  words), trained by the ``sentencepiece`` library with identity normalisation (no NFKC folding of
  full-width punctuation), whitespace kept as it is, and byte fallback for characters it never saw.
  ``tokenizer.model`` is kept for SentencePiece users; ``tokenizer.json`` is the same model for
  transformers.
* **bpe**: byte-level BPE trained by ``tokenizers``, splitting text like cl100k_base does (words,
  numbers in groups of up to three digits, punctuation runs); nothing is ever unknown.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from corral.api import InvalidSetting, NotFound
from corral_transformers.errors import CorpusError

TYPES = ("sentencepiece", "bpe")
VOCAB_RANGE = (8_000, 50_000)
RECOMMENDED = (16_000, 32_000)
DEFAULT_VOCAB = 16_000
#: SentencePiece reads at most this many lines (a random sample of a larger corpus).
MAX_SENTENCES = 2_000_000
SPM_SPECIALS = {"unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>"}
BPE_SPECIALS = {"eos_token": "<|endoftext|>", "bos_token": "<|endoftext|>", "pad_token": "<|pad|>"}


def check_vocab_size(vocab_size: int, *, any_size: bool = False) -> str | None:
    """Refuse a size outside 8,000-50,000; return a note when it is outside the recommended range."""
    if any_size:
        return None
    low, high = VOCAB_RANGE
    if not low <= vocab_size <= high:
        raise InvalidSetting(
            f"tokenizer vocab size {vocab_size:,} is outside {low:,}–{high:,} (--vocab-size); "
            f"{RECOMMENDED[0]:,}–{RECOMMENDED[1]:,} suits most corpora"
        )
    if not RECOMMENDED[0] <= vocab_size <= RECOMMENDED[1]:
        return f"note: {RECOMMENDED[0]:,}–{RECOMMENDED[1]:,} tokens is the recommended range"
    return None


def check_corpus(corpus: Path) -> int:
    """The number of non-empty lines in ``corpus``, after checking it is readable UTF-8 text."""
    corpus = Path(corpus).expanduser()
    if not corpus.exists():
        raise NotFound(f"{corpus}: no such corpus file")
    if not corpus.is_file():
        raise CorpusError(f"{corpus}: not a file; pass a .txt corpus with one sentence per line")
    lines = 0
    try:
        with corpus.open("r", encoding="utf-8", errors="strict") as text:
            for number, line in enumerate(text, 1):
                if "\x00" in line:
                    raise CorpusError(f"{corpus}: line {number} holds NUL bytes; this looks like a binary file, not text")
                lines += bool(line.strip())
    except UnicodeDecodeError as exc:
        raise CorpusError(f"{corpus}: not UTF-8 text (bad byte at offset {exc.start}); convert it to UTF-8") from None
    except OSError as exc:
        raise CorpusError(f"{corpus}: cannot read it ({exc.strerror or exc})") from None
    if not lines:
        raise CorpusError(f"{corpus} holds no text; pass a .txt corpus with one sentence per line")
    return lines


def train_sentencepiece(corpus: Path, vocab_size: int, out: Path) -> Any:
    """Train a unigram SentencePiece model on ``corpus`` and save it into ``out`` for transformers."""
    import sentencepiece as spm

    prefix = out / "tokenizer"
    try:
        spm.SentencePieceTrainer.train(
            input=str(corpus), model_prefix=str(prefix), vocab_size=vocab_size, model_type="unigram",
            character_coverage=0.9995, byte_fallback=True, split_digits=True,
            normalization_rule_name="identity", remove_extra_whitespaces=False,
            unk_id=0, bos_id=1, eos_id=2, pad_id=3,
            input_sentence_size=MAX_SENTENCES, shuffle_input_sentence=True,
            num_threads=os.cpu_count() or 1, minloglevel=2,
        )
    except RuntimeError as exc:
        reason = str(exc).strip().splitlines()[-1]
        raise CorpusError(
            f"{corpus}: SentencePiece could not train a {vocab_size:,}-token vocabulary ({reason}); "
            "use a larger corpus or a smaller --vocab-size"
        ) from None
    (out / "tokenizer.vocab").unlink(missing_ok=True)
    processor = spm.SentencePieceProcessor(model_file=str(prefix) + ".model")
    return _save(sentencepiece_to_tokenizers(processor), out, SPM_SPECIALS)


def sentencepiece_to_tokenizers(processor: Any) -> Any:
    """The same unigram model as a ``tokenizers.Tokenizer`` (what transformers' fast tokenizers run)."""
    from tokenizers import AddedToken, Tokenizer, decoders, normalizers
    from tokenizers.models import Unigram

    pieces = [(processor.id_to_piece(i), processor.get_score(i)) for i in range(processor.get_piece_size())]
    tokenizer = Tokenizer(Unigram(pieces, unk_id=processor.unk_id(), byte_fallback=True))
    # SentencePiece's own rules: a "▁" before the text and in place of every space.
    tokenizer.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tokenizer.decoder = decoders.Sequence([
        decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0),
    ])
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPM_SPECIALS.values()])
    return tokenizer


def train_bpe(corpus: Path, vocab_size: int, out: Path) -> Any:
    """Train a byte-level BPE on ``corpus`` and save it into ``out`` for transformers."""
    from tokenizers import Regex, Tokenizer, decoders, pre_tokenizers, processors, trainers
    from tokenizers.models import BPE

    from corral_transformers.default_tokenizer import PATTERN

    tokenizer = Tokenizer(BPE(fuse_unk=False))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    specials = list(dict.fromkeys(BPE_SPECIALS.values()))
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=2, special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=sys.stderr.isatty(),
    )
    tokenizer.train([str(corpus)], trainer)
    found = tokenizer.get_vocab_size()
    if found < vocab_size:
        raise CorpusError(
            f"{corpus} is too small for a {vocab_size:,}-token BPE vocabulary: it yields only {found:,} tokens "
            "seen at least twice; use a larger corpus or a smaller --vocab-size"
        )
    return _save(tokenizer, out, BPE_SPECIALS)


def _save(tokenizer: Any, out: Path, specials: dict[str, str]) -> Any:
    from corral_transformers.hf_tokenizer import save_fast_tokenizer

    return save_fast_tokenizer(tokenizer, out, **specials)


def train(corpus: Path, kind: str, vocab_size: int, out: Path) -> dict[str, Any]:
    """Train a ``kind`` tokenizer on ``corpus`` into the (checked, staged) directory ``out``."""
    if kind not in TYPES:
        raise InvalidSetting(f"unknown tokenizer type {kind!r}; choose {' or '.join(TYPES)}")
    lines = check_corpus(corpus)
    corpus = Path(corpus).expanduser().resolve()
    from corral_transformers.outdir import staged

    with staged(out, last=("tokenizer_config.json",)) as stage:
        fast = (train_sentencepiece if kind == "sentencepiece" else train_bpe)(corpus, vocab_size, stage)
    return {
        "type": kind,
        "vocab_size": len(fast),
        "corpus": str(corpus),
        "corpus_lines": lines,
        "path": str(out),
        "files": sorted(p.name for p in out.iterdir() if not p.name.startswith(".")),
    }
