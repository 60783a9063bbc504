"""Running a model where it lives: on the running server when there is one, else in this process.

:func:`use_model` yields either the server-backed :class:`RemoteModel` or a driver's own
:class:`corral.driver.LoadedModel`; both answer ``chat``, ``complete``, ``embed``, ``rerank``,
``imagine`` and ``speak`` the same way, so CLI commands do not care which they got.
"""

from __future__ import annotations

import base64
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from corral.loading import open_model
from corral.records import ChatResult
from corral.server.client import Client, connect


class EncodedImage:
    """A generated image as the server sent it (PNG bytes); ``save`` writes it like a PIL image would."""

    def __init__(self, png: bytes) -> None:
        self.png = png

    def save(self, path: Any, *args: Any, **kwargs: Any) -> None:
        path = Path(path)
        if path.suffix.lower() in ("", ".png"):
            path.write_bytes(self.png)
            return
        import io

        from PIL import Image  # another format than PNG: let PIL convert

        Image.open(io.BytesIO(self.png)).save(path, *args, **kwargs)


class RemoteModel:
    """A model served by the running server, called over its HTTP API."""

    def __init__(self, client: Client, ref: str) -> None:
        self.client = client
        self.ref = ref

    def chat(self, messages: Sequence[Mapping[str, Any]], *, stream: bool = False, **params: Any) -> Any:
        body = {"model": self.ref, "messages": list(messages), **params}
        return self._generate("/v1/chat/completions", body, stream, chat=True)

    def complete(self, prompt: str, *, stream: bool = False, **params: Any) -> Any:
        return self._generate("/v1/completions", {"model": self.ref, "prompt": prompt, **params}, stream, chat=False)

    def _generate(self, path: str, body: dict, stream: bool, *, chat: bool) -> Any:
        if stream:
            return self._pieces(path, body, chat)
        answer = self.client.post(path, body)
        choice = answer["choices"][0]
        usage = answer.get("usage") or {}
        message = choice.get("message") or {}
        calls = ()
        if chat and message.get("tool_calls"):
            from corral.tools import ToolCall

            calls = tuple(ToolCall(c["id"], c["function"]["name"], c["function"]["arguments"])
                          for c in message["tool_calls"])
        return ChatResult(
            text=(message.get("content") or "") if chat else choice["text"],
            finish_reason=choice.get("finish_reason") or "stop",
            prompt_tokens=usage.get("prompt_tokens"),
            completion_tokens=usage.get("completion_tokens"),
            tool_calls=calls,
            reasoning=message.get("reasoning_content"),
        )

    def _pieces(self, path: str, body: dict, chat: bool) -> Iterator[str]:
        for event in self.client.events(path, {**body, "stream": True}):
            for choice in event.get("choices", ()):
                piece = (choice.get("delta") or {}).get("content") if chat else choice.get("text")  # text only
                if piece:
                    yield piece

    def embed(self, texts: Sequence[str], **params: Any) -> list[list[float]]:
        answer = self.client.post("/v1/embeddings", {"model": self.ref, "input": list(texts), **params})
        return [item["embedding"] for item in sorted(answer["data"], key=lambda d: d["index"])]

    def rerank(self, query: str, documents: Sequence[str], **params: Any) -> list[tuple[int, float]]:
        top_n = params.get("top_n")
        body = {"model": self.ref, "query": query, "documents": list(documents), "top_n": top_n}
        answer = self.client.post("/v1/rerank", body)
        return [(r["index"], r["relevance_score"]) for r in answer["results"]]

    def imagine(self, prompt: str, **params: Any) -> list[EncodedImage]:
        body: dict[str, Any] = {"model": self.ref, "prompt": prompt}
        width, height = params.pop("width", None), params.pop("height", None)
        if width and height:
            body["size"] = f"{width}x{height}"
        image = params.pop("image", None)
        if image is not None:
            body["image"] = base64.b64encode(Path(image).read_bytes()).decode()
        body.update(params)
        answer = self.client.post("/v1/images/generations", body)
        return [EncodedImage(base64.b64decode(item["b64_json"])) for item in answer["data"]]

    def speak(self, text: str, **params: Any) -> tuple[list[float], int]:
        import array
        import io
        import sys
        import wave

        body = {"model": self.ref, "input": text, "response_format": "wav", **params}
        with wave.open(io.BytesIO(self.client.post_bytes("/v1/audio/speech", body))) as wav:
            rate = wav.getframerate()
            pcm = array.array("h", wav.readframes(wav.getnframes()))
        if sys.byteorder == "big":
            pcm.byteswap()
        return [v / 32767 for v in pcm], rate


@contextmanager
def use_model(
    app: Any,
    ref: str,
    *,
    loras: Sequence[str] = (),
    overrides: Mapping[str, Any] | None = None,
    force: bool = False,
) -> Iterator[Any]:
    """The model ``ref`` on the running server (loaded there as asked), or loaded in this process."""
    client = connect()
    if client is None:
        with open_model(app.library, ref, loras=loras, overrides=overrides, force=force) as handle:
            yield handle
        return
    if loras or overrides or force:
        client.post("/corral/load", {"model": ref, "loras": list(loras), "settings": dict(overrides or {}),
                                  "force": force})
    yield RemoteModel(client, ref)
