"""`LoadedModel.speak` on a tiny random-weight Kokoro model: every language path, lengths that follow the
phonemes and the speed, chunking of long text, voices, and the errors a caller can cause."""

from __future__ import annotations

import math

import numpy as np
import pytest

from corral.api import InvalidRequest, InvalidSetting
from corral_kokoro.chunks import phoneme_chunks, split_near_middle
from corral_kokoro.options import detect_language, lang_param, speed_param
from corral_kokoro.testing import tiny_config

#: Kokoro makes 600 samples (25 ms at 24 kHz) per duration frame; each token gets 1..max_dur frames.
FRAME = 600
MAX_DUR = tiny_config()["max_dur"]
ENGLISH = "The quick brown fox jumps over the lazy dog."
MANDARIN = "今天天气很好，我们一起去公园散步吧。"


def tokens_of(speech, phonemes: str) -> int:
    """Tokens KModel reads for ``phonemes``: the symbols in its vocab, plus the two boundary tokens."""
    return sum(1 for p in phonemes if p in speech.kmodel.vocab) + 2


def frame_bounds(speech, chunks: list[str], speed: float) -> tuple[int, int]:
    """The fewest and most frames the chunks can take: each token 1 .. round(max_dur / speed) frames."""
    tokens = sum(tokens_of(speech, c) for c in chunks)
    return tokens, tokens * max(1, math.ceil(MAX_DUR / speed))


def english_chunks(speech, text: str, lang: str = "a") -> list[str]:
    pipeline = speech.g2p_for(lang)
    _, tokens = pipeline.g2p(text)
    return [ps for _, ps, _ in pipeline.en_tokenize(tokens) if ps]


def check_audio(samples, rate) -> None:
    assert rate == 24000
    assert isinstance(samples, np.ndarray) and samples.dtype == np.float32 and samples.ndim == 1
    assert len(samples) % FRAME == 0
    assert np.abs(samples).max() <= 1.0
    assert np.abs(samples).max() > 0.01  # not silence


@pytest.mark.parametrize("lang", ["a", "b"])
def test_english_length_follows_the_phonemes(speech, lang):
    samples, rate = speech.speak(ENGLISH, lang=lang, voice="af_heart")
    check_audio(samples, rate)
    low, high = frame_bounds(speech, english_chunks(speech, ENGLISH, lang), 1.0)
    assert low <= len(samples) // FRAME <= high


def test_mandarin_length_follows_the_phonemes(speech):
    samples, rate = speech.speak(MANDARIN, lang="z")
    check_audio(samples, rate)
    phonemes = speech.g2p_for("z")(MANDARIN)
    assert "↓" in phonemes or "→" in phonemes  # tone marks: the Mandarin G2P ran
    low, high = frame_bounds(speech, [phonemes], 1.0)
    assert low <= len(samples) // FRAME <= high


def test_faster_is_shorter(speech):
    lengths = [len(speech.speak("Hello there, friend.", voice="af_heart", speed=s)[0]) for s in (0.5, 1.0, 2.0)]
    assert lengths[0] > lengths[1] > lengths[2], lengths
    zh = [len(speech.speak("你好，朋友。", speed=s)[0]) for s in (0.5, 2.0)]
    assert zh[0] > zh[1], zh


def test_speed_setting_is_the_default(speech):
    old = speech.options
    try:
        import attrs

        speech.options = attrs.evolve(old, speed=2.0)
        fast = len(speech.speak("Hello there, friend.", voice="af_heart")[0])
    finally:
        speech.options = old
    assert fast == len(speech.speak("Hello there, friend.", voice="af_heart", speed=2.0)[0])
    assert fast < len(speech.speak("Hello there, friend.", voice="af_heart")[0])


def test_long_english_is_chunked_by_kokoro_and_joined(speech):
    text = " ".join([ENGLISH] * 14)  # about 600 phonemes: more than one 510-phoneme chunk
    chunks = english_chunks(speech, text)
    assert len(chunks) >= 2 and all(len(c) <= 510 for c in chunks)
    samples, rate = speech.speak(text, voice="af_heart", speed=2.0)
    check_audio(samples, rate)
    low, high = frame_bounds(speech, chunks, 2.0)
    assert low <= len(samples) // FRAME <= high


def test_long_mandarin_is_chunked_not_cut(speech):
    text = MANDARIN * 12  # over 800 phonemes: more than one pass of Kokoro can read
    g2p = speech.g2p_for("z")
    whole = g2p(text)
    chunks = list(phoneme_chunks(text, g2p, 510))
    assert len(whole) > 800 and len(chunks) >= 2 and all(len(c) <= 510 for c in chunks)
    assert sum(len(c) for c in chunks) >= len(whole) - len(chunks)  # nothing dropped (spaces aside)
    samples, rate = speech.speak(text, speed=2.0)
    check_audio(samples, rate)
    low, high = frame_bounds(speech, chunks, 2.0)
    assert low <= len(samples) // FRAME <= high


def test_chunks_cut_at_sentences_then_near_the_middle():
    identity = lambda text: text  # noqa: E731 -- phonemes = letters: the cuts are easy to see
    parts = list(phoneme_chunks("One two. Three four! Five six?", identity, 12))
    assert parts == ["One two.", "Three four!", "Five six?"]
    assert list(phoneme_chunks("One two. Three four!", identity, 40)) == ["One two. Three four!"]
    assert split_near_middle("aaaa bbbb cccc, dddd eeee ffff") == ("aaaa bbbb cccc,", "dddd eeee ffff")
    assert split_near_middle("aaaa bbbb cccc dddd") == ("aaaa bbbb", "cccc dddd")
    assert split_near_middle("今天天气很好，我们一起去公园") == ("今天天气很好，", "我们一起去公园")
    assert split_near_middle("今天天气很好我们") == ("今天天气", "很好我们")
    assert list(phoneme_chunks("x" * 30, identity, 8)) == ["xxxxxxx", "xxxxxxxx", "xxxxxxx", "xxxxxxxx"]
    assert "".join(phoneme_chunks("3.14 is pi.", identity, 100)) == "3.14 is pi."


def test_language_is_detected_from_the_text_and_voice():
    assert detect_language(MANDARIN, None) == "z"
    assert detect_language("Hello 世界", "af_heart") == "z"
    assert detect_language(ENGLISH, None) == "a"
    assert detect_language(ENGLISH, "bf_emma") == "b"
    assert detect_language(ENGLISH, "af_heart") == "a"
    assert [lang_param("m", v) for v in (None, "auto", "A", "en-gb", "zh")] == [None, None, "a", "b", "z"]


def test_auto_language_uses_the_voice_and_the_text(speech):
    speech.speak(ENGLISH, voice="bf_emma")
    assert "b" in speech.g2p_paths
    speech.speak(MANDARIN)  # no voice, no lang: Mandarin, spoken by the Mandarin voice
    assert speech.default_voice("z") == "zf_xiaobei"
    assert speech.default_voice("a") == "af_heart" and speech.default_voice("b") == "bf_emma"


def test_mandarin_reads_latin_words_in_english(speech):
    phonemes = speech.g2p_for("z")("我用iPhone。")
    assert "↓" in phonemes and speech._english_phonemes()("iPhone") in phonemes


def test_voices_blend(speech):
    samples, rate = speech.speak("Hi there.", voice="af_heart,bf_emma")
    check_audio(samples, rate)
    blend = speech.voice_pack("af_heart,bf_emma")
    assert np.allclose(blend.numpy(), (speech.voice_pack("af_heart") + speech.voice_pack("bf_emma")).numpy() / 2)


def test_missing_voice_lists_the_voices(speech):
    with pytest.raises(InvalidSetting) as err:
        speech.speak(ENGLISH, voice="am_nobody")
    assert "'am_nobody'" in str(err.value)
    assert "af_heart, bf_emma, zf_xiaobei" in str(err.value)
    with pytest.raises(InvalidSetting, match="af_heart, bf_emma, zf_xiaobei"):
        speech.speak(ENGLISH, voice="af_heart,xx")


@pytest.mark.parametrize("speed", [0.49, 2.01, 0, -1, float("nan"), float("inf"), "fast", True])
def test_speed_outside_the_range_is_refused(speech, speed):
    with pytest.raises(InvalidSetting, match="speed"):
        speech.speak(ENGLISH, speed=speed)


def test_speed_param_bounds():
    assert speed_param("m", None, 1.25) == 1.25
    assert speed_param("m", "0.5", 1.0) == 0.5 and speed_param("m", 2, 1.0) == 2.0


@pytest.mark.parametrize("lang", ["j", "fr", "english"])
def test_unknown_language_is_refused(speech, lang):
    with pytest.raises(InvalidSetting, match="a .American English., b .British English., z .Mandarin"):
        speech.speak(ENGLISH, lang=lang)


@pytest.mark.parametrize("text", ["", "   ", None])
def test_empty_text_is_refused(speech, text):
    with pytest.raises(InvalidRequest, match="nothing to say"):
        speech.speak(text)


@pytest.mark.parametrize("text, lang", [("___", "a"), ("___", "b"), ("\u200b", "z")])
def test_unpronounceable_text_is_refused(speech, text, lang):
    with pytest.raises(InvalidRequest, match="nothing to say"):
        speech.speak(text, lang=lang)


def test_other_tasks_are_unsupported(speech):
    from corral.api import Unsupported

    with pytest.raises(Unsupported):
        speech.chat([{"role": "user", "content": "hi"}])
    with pytest.raises(Unsupported):
        speech.embed(["hi"])


def test_memory_counts_weights_and_voices(speech):
    memory = speech.memory()
    params = sum(p.numel() * 4 for p in speech.kmodel.parameters())
    assert memory["vram"] == 0 and memory["ram"] >= params
