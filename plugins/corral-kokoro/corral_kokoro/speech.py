"""A loaded Kokoro model behind :meth:`LoadedModel.speak`: voices, languages, chunking, synthesis."""

from __future__ import annotations

import threading
from typing import Any, Mapping

import numpy as np
import torch
from kokoro import KModel, KPipeline

from corral.api import LoadedModel, free_torch_memory, torch_memory, torch_threads
from corral.api import CorralError, InsufficientMemory, InvalidRequest, InvalidSetting
from corral.api import Model
from corral_kokoro import g2p as g2ps
from corral_kokoro.chunks import phoneme_chunks
from corral_kokoro.driver import LANGUAGES, SAMPLE_RATE
from corral_kokoro.loading import (
    MAX_PHONEMES,
    REPO_ID,
    build_kmodel,
    check_config,
    model_files,
    read_voice,
    resolve_device,
)
from corral_kokoro.options import Options, detect_language, lang_param, speed_param

#: The voice each language speaks with when neither the request nor the ``voice`` setting names one
#: (Kokoro-82M's own favourites), when the model has it.
DEFAULT_VOICES = {"a": "af_heart", "b": "bf_emma", "z": "zf_xiaobei"}


def load_speech(model: Model, settings: Mapping[str, Any]) -> "KokoroSpeech":
    """Build the model of ``model``'s folder on its device (voices load when first used)."""
    torch_threads(settings)
    options = Options.read(model, settings)
    config, checkpoint, voice_files = model_files(model)
    check_config(model.name, checkpoint.parent, config)
    if options.voice:
        _check_voice_names(model.name, options.voice, voice_files, "the voice setting")
    device = resolve_device(model, options.device)
    kmodel = build_kmodel(model, config, checkpoint, device)
    # Kokoro-82M-v1.1-zh spells Mandarin in Bopomofo (and needs misaki's newer Mandarin frontend).
    zh_version = "1.1" if any("\u3100" <= str(s)[:1] <= "\u312f" for s in config["vocab"]) else None
    return KokoroSpeech(model, settings, kmodel, options, voice_files, device, zh_version)


class LocalPipeline(KPipeline):
    """kokoro's ``KPipeline`` (English chunking, timestamps, synthesis) on a G2P built from local files:
    its own constructor would download a spaCy pipeline that is not installed."""

    def __init__(self, lang_code: str, model: KModel, g2p: Any) -> None:
        # What KPipeline.__init__ sets for an English pipeline with a model, without building its own G2P.
        self.repo_id = REPO_ID
        self.lang_code = lang_code
        self.model = model
        self.voices = {}
        self.g2p = g2p


class KokoroSpeech(LoadedModel):
    """A loaded Kokoro model. ``voices`` lists the voice names of its folder."""

    def __init__(self, model: Model, settings: Mapping[str, Any], kmodel: KModel, options: Options,
                 voice_files: Mapping[str, Any], device: str, zh_version: str | None) -> None:
        super().__init__(model, settings)
        self.kmodel = kmodel
        self.options = options
        self.device = device
        self.zh_version = zh_version
        self.voice_files = dict(voice_files)
        self.voices: list[str] = sorted(voice_files)
        #: Which English G2P each English language code took (``tagger``, ``lexicon`` or ``espeak``).
        self.g2p_paths: dict[str, str] = {}
        self._packs: dict[str, torch.Tensor] = {}
        self._g2p: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._memory = torch_memory(kmodel)

    # --- speak -----------------------------------------------------------------------------------

    def speak(self, text: str, **params: Any) -> tuple[np.ndarray, int]:
        """Synthesise ``text``: ``(samples, 24000)``, float32 samples in [-1, 1], mono.

        :param text: what to say; long text is read in chunks of at most 510 phonemes, joined.
        :param params: ``voice`` (a voice name, or several joined by commas to blend them; default: the
            ``voice`` setting when it speaks the text's language, else af_heart, bf_emma or zf_xiaobei, else
            the first voice of that language), ``speed`` (0.5–2.0; default the ``speed`` setting, 1.0),
            ``lang`` (``a`` American English, ``b`` British English, ``z`` Mandarin, ``auto`` or unset:
            Mandarin when the text holds CJK ideographs, else English, British for a ``b…`` voice).
            Other params are ignored.
        :raises InvalidSetting: an unknown voice (the error lists the voices), a speed outside 0.5–2.0,
            a language other than a, b, z, auto.
        :raises InvalidRequest: no text, or nothing in it that can be pronounced.
        """
        name = self.model.name
        if not isinstance(text, str) or not text.strip():
            raise InvalidRequest(f"{name}: nothing to say: the text is empty")
        speed = speed_param(name, params.get("speed"), self.options.speed)
        lang = lang_param(name, params.get("lang"))
        asked = params.get("voice") or None
        if asked is not None and not isinstance(asked, str):
            raise InvalidSetting(f"{name}: voice must be a voice name, got {asked!r}")
        if lang is None:
            lang = detect_language(text, asked or self.options.voice)
        voice = asked or self.default_voice(lang)
        with self._lock:
            if self.kmodel is None:
                raise CorralError(f"{name}: the model was unloaded; load it again")
            pack = self.voice_pack(voice)
            try:
                pieces = self._synthesise(text, lang, pack, speed)
            except CorralError:
                raise
            except Exception as exc:
                raise _run_error(name, exc) from exc
        if not pieces:
            raise InvalidRequest(f"{name}: nothing to say: no word in the text can be pronounced in "
                                 f"{LANGUAGES[lang]} (lang={lang})")
        audio = np.concatenate(pieces).astype(np.float32, copy=False)
        return np.clip(audio, -1.0, 1.0), SAMPLE_RATE

    def _synthesise(self, text: str, lang: str, pack: torch.Tensor, speed: float) -> list[np.ndarray]:
        """The audio of each chunk of ``text``, in order."""
        g2p = self.g2p_for(lang)
        if isinstance(g2p, LocalPipeline):  # misaki English: kokoro's pipeline chunks the tokens
            return [r.audio.numpy() for r in g2p(text, voice=pack, speed=speed) if r.audio is not None]
        pack = pack.to(self.kmodel.device)
        vocab = self.kmodel.vocab
        # KModel drops symbols outside its vocabulary; a chunk with none left would speak only its edges.
        return [KPipeline.infer(self.kmodel, ps, pack, speed).audio.numpy()
                for ps in phoneme_chunks(text, g2p, MAX_PHONEMES) if any(p in vocab for p in ps)]

    def g2p_for(self, lang: str) -> Any:
        """The text front end for ``lang``, built on first use: a :class:`LocalPipeline` for misaki English,
        else a text -> phonemes callable."""
        if lang not in self._g2p:
            if lang in ("a", "b"):
                path, g2p = g2ps.english_g2p(self.model.name, british=lang == "b",
                                             mode=self.options.english_g2p, spacy_model=self.options.spacy_model)
                self.g2p_paths[lang] = path
                self._g2p[lang] = g2p if path == "espeak" else LocalPipeline(lang, self.kmodel, g2p)
            else:
                self._g2p[lang] = g2ps.mandarin_g2p(self.zh_version, self._english_phonemes())
        return self._g2p[lang]

    def _english_phonemes(self) -> Any:
        """American English text -> phonemes, for Latin-script words inside Mandarin text."""
        english = self.g2p_for("a")
        if isinstance(english, LocalPipeline):
            misaki = english.g2p
            return lambda text: misaki(text)[0]
        return english

    # --- voices ----------------------------------------------------------------------------------

    def default_voice(self, lang: str) -> str:
        """The voice for text in ``lang`` when the request names none."""
        configured = self.options.voice
        if configured and (configured[:1] == lang or not any(v[:1] == lang for v in self.voices)):
            return configured
        if DEFAULT_VOICES.get(lang) in self.voice_files:
            return DEFAULT_VOICES[lang]
        same = [v for v in self.voices if v[:1] == lang]
        return same[0] if same else (configured or self.voices[0])

    def voice_pack(self, voice: str) -> torch.Tensor:
        """The style pack of ``voice``: one voice's file, or the mean of several joined by commas."""
        names = _check_voice_names(self.model.name, voice, self.voice_files, "voice")
        for name in names:
            if name not in self._packs:
                self._packs[name] = read_voice(self.model.name, name, self.voice_files[name])
        packs = [self._packs[n] for n in names]
        return packs[0] if len(packs) == 1 else torch.stack(packs).mean(dim=0)

    # --- lifecycle -------------------------------------------------------------------------------

    def memory(self) -> dict[str, int]:
        memory = dict(self._memory)
        memory["ram"] = memory.get("ram", 0) + sum(p.numel() * p.element_size() for p in self._packs.values())
        return memory

    def unload(self) -> None:
        with self._lock:
            self.kmodel = None
            self._g2p.clear()
            self._packs.clear()
        free_torch_memory()


def _check_voice_names(model_name: str, voice: str, voice_files: Mapping[str, Any], what: str) -> list[str]:
    """The voice names in ``voice`` (comma-separated), each checked against the model's voices."""
    names = [v.strip() for v in voice.split(",") if v.strip()]
    unknown = [v for v in names if v not in voice_files]
    if unknown or not names:
        listed = ", ".join(sorted(voice_files))
        raise InvalidSetting(f"{model_name}: {what} {(unknown or [voice])[0]!r} is not one of its voices: {listed}")
    return names


def _run_error(name: str, exc: BaseException) -> CorralError:
    text = " ".join(str(exc).split())[:300]
    if type(exc).__name__ == "OutOfMemoryError" or isinstance(exc, MemoryError) or "out of memory" in text.lower():
        return InsufficientMemory(f"{name}: out of memory while speaking; use shorter text or the CPU: "
                                  f"corral settings {name} --set device=cpu")
    return CorralError(f"{name}: kokoro could not speak the text ({type(exc).__name__}: {text})")
