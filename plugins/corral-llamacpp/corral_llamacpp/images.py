"""Images in chat messages (OpenAI-style content parts) and the projector that feeds them to the model.

A part ``{"type": "image_url", "image_url": {"url": ...}}`` (or ``"image_url": "..."``) carries a
``data:`` URL (base64) or a local file (a path or ``file://`` URL). Remote URLs are refused: a model
server must not fetch what a request points it at.
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path
from typing import Any, Mapping, Sequence
from urllib.parse import unquote, urlparse

from corral.api import Unsupported
from corral.api import CorralError

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


def has_images(messages: Sequence[Mapping[str, Any]]) -> bool:
    """Whether any message carries an image part."""
    return any(image_url(p) for m in messages for p in parts(m.get("content")))


def text_messages(messages: Sequence[Mapping[str, Any]], model_name: str) -> list[dict[str, Any]]:
    """Messages with list content flattened to text; an image part is refused (the model has no projector)."""
    out = []
    for message in messages:
        content = message.get("content")
        if not isinstance(content, str) and content is not None:
            texts = []
            for part in parts(content):
                if image_url(part):
                    raise Unsupported(
                        f"{model_name} cannot read images: it has no mmproj component; attach one with "
                        f"`corral component add {model_name} mmproj PATH`"
                    )
                if part.get("type") == "text":
                    texts.append(str(part.get("text", "")))
            content = "".join(texts)
        out.append({**message, "content": content if content is not None else ""})
    return out


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


def check_image_roles(messages: Sequence[Mapping[str, Any]]) -> None:
    """Images are read from user messages only (as OpenAI's API does); refuse them elsewhere."""
    for message in messages:
        if message.get("role") != "user" and any(image_url(p) for p in parts(message.get("content"))):
            raise CorralError(f"images go in user messages, not in a {message.get('role')!r} message")


def projector_handler(mmproj: Path, template: str, *, use_gpu: bool) -> Any:
    """llama-cpp-python's libmtmd chat handler for ``mmproj``, rendering Corral's chosen ``template`` and
    reading images through :func:`read_image`."""
    from llama_cpp.llama_chat_format import MTMDChatHandler

    class CorralProjector(MTMDChatHandler):
        template_source = template

        def _get_chat_template(self, llama_model: Any) -> str:
            # The handler insists on the GGUF's own template; Corral's choice may be a built-in or the user's.
            return self.template_source

        def load_image(self, image_url: str) -> bytes:
            return read_image(image_url)

    return CorralProjector(str(mmproj), verbose=False, use_gpu=use_gpu)
