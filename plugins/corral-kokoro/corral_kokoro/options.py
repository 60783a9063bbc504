"""Load settings and request parameters, checked and typed: speed range, language codes, devices."""

from __future__ import annotations

import math
import re
from typing import Any, Mapping

import attrs

from corral.api import InvalidSetting
from corral.api import Model
from corral.api import read_settings
from corral_kokoro.driver import LANGUAGES, SETTINGS, SPEED_MAX, SPEED_MIN

#: Other names callers use for the three languages (Kokoro's KPipeline knows the same aliases).
LANGUAGE_ALIASES = {"en-us": "a", "en": "a", "en-gb": "b", "zh": "z", "zh-cn": "z", "cmn": "z"}

#: CJK ideographs (unified, extension A, compatibility): text holding any of them is Mandarin.
_HAN = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


@attrs.frozen
class Options:
    """A model's load settings (see :data:`corral_kokoro.driver.SETTINGS`), checked and typed."""

    device: str | None = None
    voice: str | None = None
    speed: float = 1.0
    english_g2p: str = "auto"
    spacy_model: str | None = None

    @classmethod
    def read(cls, model: Model, settings: Mapping[str, Any]) -> "Options":
        """Typed options from saved settings plus overrides (HTTP callers may send strings)."""
        return cls(**read_settings(SETTINGS, settings, model.name))


def speed_param(name: str, value: Any, default: float) -> float:
    """The speed of one request: a number from 0.5 to 2.0 (``None``: the ``speed`` setting).

    :raises InvalidSetting: not a number, or outside 0.5–2.0.
    """
    if value is None:
        return default
    try:
        speed = float(value)
    except (TypeError, ValueError):
        raise InvalidSetting(f"{name}: speed must be a number from {SPEED_MIN} to {SPEED_MAX}, got {value!r}") from None
    if isinstance(value, bool) or not math.isfinite(speed) or not SPEED_MIN <= speed <= SPEED_MAX:
        raise InvalidSetting(f"{name}: speed {value!r} is outside {SPEED_MIN}–{SPEED_MAX} "
                             f"(1.0 is normal, 0.5 half as fast, 2.0 twice as fast)")
    return speed


def lang_param(name: str, value: Any) -> str | None:
    """The language code asked for (``a``, ``b`` or ``z``), or ``None`` for automatic detection.

    :raises InvalidSetting: a language this driver does not speak.
    """
    if value is None:
        return None
    code = str(value).strip().lower()
    if code in ("", "auto"):
        return None
    code = LANGUAGE_ALIASES.get(code, code)
    if code not in LANGUAGES:
        known = ", ".join(f"{c} ({n})" for c, n in LANGUAGES.items())
        raise InvalidSetting(f"{name}: language {value!r} is not one Corral's Kokoro driver speaks; "
                             f"use {known}, or auto")
    return code


def detect_language(text: str, voice: str | None) -> str:
    """The language of ``text``: Mandarin when it holds CJK ideographs, else English, British when the
    voice is a British one (its name starts with ``b``), American otherwise."""
    if _HAN.search(text):
        return "z"
    if voice and voice.strip()[:1] == "b":
        return "b"
    return "a"
