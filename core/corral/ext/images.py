"""Images in chat messages (OpenAI-style content parts), read for a driver that feeds them to a model.

A part ``{"type": "image_url", "image_url": {"url": ...}}`` (or ``"image_url": "..."``) carries a
``data:`` URL (base64) or a local file (a path or ``file://`` URL). Remote URLs are refused: a model
server must not fetch what a request points it at. Sizes are bounded before anything is decoded.
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path
from typing import Any, Mapping, Sequence
from urllib.parse import unquote, urlparse

from corral.errors import CorralError


#: Largest image Corral reads for one part (a 8K PNG is far below it).
MAX_IMAGE_BYTES = 64 * 1024**2


def image_url(part: Mapping[str, Any]) -> str | None:
    """The URL of an image part, or None for a part of another type."""
    if part.get("type") != "image_url":
        return None
    value = part.get("image_url")
    if isinstance(value, Mapping):
        value = value.get("url")
    if not isinstance(value, str) or not value:
        raise CorralError("an image_url part needs a url: a data: URL or a local file path")
    return value


def parts(content: Any) -> list[Mapping[str, Any]]:
    """A message's content as a list of parts (a plain string is one text part)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, Sequence) and all(isinstance(p, Mapping) for p in content):
        return list(content)
    raise CorralError(f"message content must be a string or a list of parts, not {type(content).__name__}")


def read_image(url: str) -> bytes:
    """The bytes of an image given as a ``data:`` URL, a ``file://`` URL or a local path."""
    if url.startswith("data:"):
        header, sep, payload = url.partition(",")
        if not sep:
            raise CorralError("a data: URL for an image needs a comma before its payload")
        if len(payload) > MAX_IMAGE_BYTES * 4 // 3 + 4:
            raise CorralError(f"an image larger than {MAX_IMAGE_BYTES // 1024**2} MB was refused")
        if header.endswith(";base64"):
            try:
                return base64.b64decode(payload, validate=True)
            except binascii.Error:
                raise CorralError("an image data: URL is not valid base64") from None
        return unquote(payload).encode("latin-1")
    parsed = urlparse(url)
    if parsed.scheme in ("http", "https", "ftp"):
        raise CorralError(
            f"remote image URLs are not fetched ({parsed.scheme}://...); send the image as a data: URL "
            "or a local file path"
        )
    path = Path(unquote(parsed.path) if parsed.scheme == "file" else url).expanduser()
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise CorralError(f"image {path}: {exc.strerror or exc}") from None
    if size > MAX_IMAGE_BYTES:
        raise CorralError(f"image {path} is larger than {MAX_IMAGE_BYTES // 1024**2} MB")
    return path.read_bytes()
