"""Images in chat messages (OpenAI-style content parts), read by Corral and handed to llama.cpp inline.

A part ``{"type": "image_url", "image_url": {"url": ...}}`` (or ``"image_url": "..."``) carries a
``data:`` URL (base64) or a local file (a path or ``file://`` URL), as corral-llamacpp reads them. Remote
URLs are refused: a model server must not fetch what a request points it at. llama.cpp only ever sees
base64 ``data:`` URLs.
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path
from typing import Any, Mapping, Sequence
from urllib.parse import unquote, urlparse

from corral.api import CorralError, Unsupported

#: Largest image Corral reads for one part (an 8K PNG is far below it).
MAX_IMAGE_BYTES = 64 * 1024**2
_MIME = ((b"\x89PNG", "image/png"), (b"\xff\xd8", "image/jpeg"), (b"GIF8", "image/gif"), (b"BM", "image/bmp"))


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


def _data_url(data: bytes) -> str:
    mime = next((m for magic, m in _MIME if data.startswith(magic)), None)
    if mime is None and not (data[:4] == b"RIFF" and data[8:12] == b"WEBP"):
        raise CorralError("an image could not be decoded (PNG, JPEG, BMP or GIF expected)")
    return f"data:{mime or 'image/webp'};base64," + base64.b64encode(data).decode("ascii")


def prepared(messages: Sequence[Mapping[str, Any]], model_name: str, *, can_see: bool) -> list[dict[str, Any]]:
    """Messages for llama.cpp: image parts as inline ``data:`` URLs (only in user messages, only for a
    model with a projector); text-only list content is left as it is (llama.cpp joins the parts)."""
    out = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, str) or content is None:
            out.append({**message, "content": content if content is not None else ""})
            continue
        new_parts = []
        for part in parts(content):
            url = image_url(part)
            if url is None:
                new_parts.append(dict(part))
                continue
            if not can_see:
                raise Unsupported(
                    f"{model_name} cannot read images: it has no mmproj component; attach one with "
                    f"`corral component add {model_name} mmproj PATH`"
                )
            if message.get("role") != "user":
                raise CorralError(f"images go in user messages, not in a {message.get('role')!r} message")
            new_parts.append({"type": "image_url", "image_url": {"url": _data_url(read_image(url))}})
        out.append({**message, "content": new_parts})
    return out
