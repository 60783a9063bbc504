"""Encoding generated media for HTTP: WAV audio and PNG images."""

from __future__ import annotations

import array
import io
import sys
import wave
from typing import Any, Iterable


def pcm16(samples: Iterable[Any]) -> bytes:
    """16-bit little-endian mono PCM from float samples in [-1, 1]."""
    # round, not truncate: samples decoded from 16-bit PCM (v / 32767) encode back to the same values.
    pcm = array.array("h", (round(max(-1.0, min(1.0, float(s))) * 32767) for s in samples))
    if sys.byteorder == "big":
        pcm.byteswap()
    return pcm.tobytes()


def wav_bytes(samples: Iterable[Any], rate: int) -> bytes:
    """A complete 16-bit mono WAV file."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(int(rate))
        out.writeframes(pcm16(samples))
    return buffer.getvalue()


def png_bytes(image: Any) -> bytes:
    """PNG bytes of a PIL image."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
