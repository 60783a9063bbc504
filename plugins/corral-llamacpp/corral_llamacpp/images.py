"""Images in chat messages (OpenAI-style content parts) and the projector that feeds them to the model.

A part ``{"type": "image_url", "image_url": {"url": ...}}`` (or ``"image_url": "..."``) carries a
``data:`` URL (base64) or a local file (a path or ``file://`` URL). Remote URLs are refused: a model
server must not fetch what a request points it at.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from corral.api import image_url, parts, read_image
from corral.api import CorralError, Unsupported


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
