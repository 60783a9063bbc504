"""Images in chat messages (OpenAI-style content parts), read by Corral and handed to llama.cpp inline.

A part ``{"type": "image_url", "image_url": {"url": ...}}`` (or ``"image_url": "..."``) carries a
``data:`` URL (base64) or a local file (a path or ``file://`` URL), as corral-llamacpp reads them. Remote
URLs are refused: a model server must not fetch what a request points it at. llama.cpp only ever sees
base64 ``data:`` URLs.
"""

from __future__ import annotations

import base64
from typing import Any, Mapping, Sequence

from corral.api import image_url, parts, read_image
from corral.api import CorralError, Unsupported

#: Leading bytes -> the MIME type of a data: URL handed to llama.cpp.
_MIME = ((b"\x89PNG", "image/png"), (b"\xff\xd8", "image/jpeg"), (b"GIF8", "image/gif"), (b"BM", "image/bmp"))


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
