"""Long text in pieces Kokoro can speak: at most 510 phonemes each, cut at sentence ends where possible.

Kokoro reads at most 510 phonemes at a time. misaki's English tokens are chunked by kokoro's own
``KPipeline``; the other paths (Mandarin, espeak English) give one phoneme string per piece of text, and
kokoro's pipeline would cut those at 510 phonemes and drop the rest, so they are chunked here: text that
fits is read in one pass; longer text by sentences, a sentence still too long in halves at the
punctuation or space nearest its middle, and neighbouring pieces joined again while they fit.
"""

from __future__ import annotations

import re
from typing import Callable, Iterator

#: Where a sentence ends: Latin punctuation before a space (so 3.14 stays whole), CJK punctuation, new lines.
_SENTENCE_END = re.compile(r"(?<=[.!?;…])\s+|(?<=[。！？；])\s*|\n+")
#: Where a too-long sentence may be cut, best first: clause punctuation, then spaces.
_CLAUSE = re.compile(r"[,，、:：;；—]")
_SPACE = re.compile(r"\s")


def phoneme_chunks(text: str, g2p: Callable[[str], str], limit: int) -> Iterator[str]:
    """Phoneme strings of at most ``limit`` symbols that together read ``text``, in order."""
    text = text.strip()
    if len(text) <= limit:  # most requests: one G2P pass over the whole text, which then fits or not
        whole = g2p(text).strip()
        if len(whole) <= limit:
            if whole:
                yield whole
            return
    pending = ""
    for sentence in _SENTENCE_END.split(text):
        if not sentence.strip():
            continue
        for phonemes in _fit(sentence.strip(), g2p, limit):
            if pending and len(pending) + 1 + len(phonemes) <= limit:
                pending = f"{pending} {phonemes}"
                continue
            if pending:
                yield pending
            pending = phonemes
    if pending:
        yield pending


def _fit(text: str, g2p: Callable[[str], str], limit: int) -> list[str]:
    """``text``'s phonemes in pieces of at most ``limit``, halving the text until each piece fits."""
    phonemes = g2p(text).strip()
    if len(phonemes) <= limit:
        return [phonemes] if phonemes else []
    left, right = split_near_middle(text)
    if not left or not right:  # a single "word" longer than the model's context: keep what fits
        return [phonemes[:limit]]
    return _fit(left, g2p, limit) + _fit(right, g2p, limit)


def split_near_middle(text: str) -> tuple[str, str]:
    """``text`` in two near its middle: after clause punctuation when one lies within a quarter of the
    length of it, else at the nearest space, else (text without spaces, such as Chinese) in the middle."""
    middle, bonus = len(text) // 2, len(text) // 4
    cuts = [(abs(m.end() - middle) - bonus, m.end()) for m in _CLAUSE.finditer(text)]
    cuts += [(abs(m.end() - middle), m.end()) for m in _SPACE.finditer(text)]
    cuts = [c for c in cuts if 0 < c[1] < len(text)]
    if cuts:
        cut = min(cuts)[1]
    elif len(text) >= 2:
        cut = middle
    else:
        return text, ""
    return text[:cut].strip(), text[cut:].strip()
