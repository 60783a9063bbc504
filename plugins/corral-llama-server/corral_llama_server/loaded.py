"""A model loaded in llama.cpp's server engine: slots decoded together, requests through its handlers.

Every task is one call of an in-process handler of the engine (the same code llama-server's HTTP routes
run, without HTTP): the call blocks its thread while the engine's loop decodes this request's slot in one
batch with the others, so the runtime admits up to ``parallel`` requests at once and each waits in its
own worker thread. A stream runs the handler in a thread of its own and hands the pieces over a queue.
"""

from __future__ import annotations

import queue
import shutil
import threading
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from corral.api import Category, ChatResult, LoraRequest, Model, TokenLogprob
from corral.api import CorralError, InvalidRequest
from corral.api import LoadedModel
from corral.api import Delta, family_of
from corral.api import read_response_format, with_defaults, with_system_prompt

from corral_llama_server import images
from corral_llama_server.sampling import PARAMS, request_body
from corral_llama_server.shaping import FEATURES, prepare, read_asked, reason
from corral_llama_server.templates import ChatTemplate

_END = object()
_TEXT = {Category.CHAT, Category.MULTIMODAL}


class LlamaServerModel(LoadedModel):
    """A live ``xllamacpp.Server`` (one model, ``parallel`` slots of ``context_length`` tokens each)."""

    #: What the server may pass to :meth:`chat` / :meth:`complete` (any other field is a 400 naming it):
    #: the sampling parameters, log-probabilities, ``response_format`` (llama.cpp's JSON-schema grammar),
    #: tools and ``reasoning_effort`` (see :mod:`corral_llama_server.shaping`).
    request_fields = frozenset(PARAMS) | {"stop", "logprobs", "top_logprobs", "response_format", *FEATURES}

    def __init__(
        self,
        model: Model,
        settings: Mapping[str, Any],
        loras: Sequence[LoraRequest],
        *,
        server: Any,
        socket_dir: str,
        template: ChatTemplate | None,
        projector: Path | None,
        slots: int,
        slot_context: int,
        memory: Mapping[str, int] | None = None,
    ) -> None:
        super().__init__(model, settings, loras)
        self.server = server
        self.template = template
        self.projector = projector
        #: Requests this model decodes at once; the runtime admits that many (see ``corral ps``).
        self.parallel = slots
        self._slot_context = slot_context
        self._socket_dir = socket_dir
        self._memory = dict(memory or {"ram": 0, "vram": 0})
        seed = settings.get("seed")
        self._default_seed = int(seed) if seed is not None else None
        self._cache_prompt = bool(settings.get("cache_prompt", True))

    # --- what the load gave ------------------------------------------------------------------------

    @property
    def context_length(self) -> int:
        """The context of one slot, in tokens."""
        return self._slot_context

    @property
    def tool_family(self) -> str | None:
        """How this model writes tool calls (:data:`corral.tools.FAMILIES`), from its chat template."""
        return family_of(self.template.text) if self.template else None

    def memory(self) -> dict[str, int]:
        """RAM and VRAM the load took, measured around it (bytes)."""
        return dict(self._memory)

    def metrics(self) -> str:
        """llama.cpp's own Prometheus metrics of this engine (tokens, slots busy, ...)."""
        return self._engine().handle_metrics()

    def unload(self) -> None:
        """Stop the engine's loop and free the model, its slots and its projector now."""
        server, self.server = self.server, None
        del server  # the engine's destructor stops its loop and joins it
        shutil.rmtree(self._socket_dir, ignore_errors=True)

    # --- tasks ---------------------------------------------------------------------------------------

    def chat(self, messages: Sequence[Mapping[str, Any]], *, stream: bool = False, **params: Any) -> Any:
        """Answer OpenAI-style ``messages``: a :class:`ChatResult`, or with ``stream=True`` text pieces
        (:class:`Delta` pieces where the answer has structure: reasoning, tool calls).

        ``tools`` / ``tool_choice`` / ``parallel_tool_calls``, ``response_format``, ``logprobs`` /
        ``top_logprobs`` and ``reasoning_effort`` as in OpenAI's chat completions (see docs/http.md)."""
        self._can("chat", _TEXT)
        messages = with_system_prompt(self.settings, _checked(messages))
        asked = read_asked(params)
        assert self.template is not None  # every chat model's load chose one
        ready = prepare(messages, asked, self.template, self.settings,
                        read_response_format(params.get("response_format")))
        body = self._body(asked.rest, ready.schema)
        body["messages"] = images.prepared(ready.messages, self.model.name, can_see=self.projector is not None)
        body["reasoning_format"] = "none"  # the raw text: Corral's parsers find the thought and the calls
        if ready.kwargs:
            body["chat_template_kwargs"] = ready.kwargs
        if stream:
            body["stream_options"] = {"include_usage": True}
            answer = ready.shape.stream() if ready.shaped else None
            return self._stream("handle_chat_completions", body, lambda c: (c.get("delta") or {}).get("content"),
                                answer=answer)
        result = self._call("handle_chat_completions", body)
        text = (result["choices"][0].get("message") or {}).get("content") or ""
        if not ready.shaped:
            return _result(result, text, params)
        return _result(result, text, params, shaped=ready.shape.finish(text.strip() if ready.schema else text))

    def complete(self, prompt: str, *, stream: bool = False, **params: Any) -> Any:
        """Continue ``prompt`` as plain text (no chat template)."""
        self._can("complete text", _TEXT)
        if not isinstance(prompt, str):
            raise CorralError("a completion prompt must be a string")
        asked = read_asked(params)
        if asked.tools is not None:
            raise InvalidRequest("tools need a chat; a plain completion cannot call them")
        answer_format = read_response_format(params.get("response_format"))
        body = self._body(asked.rest, answer_format.json_schema() if answer_format.constrained else None)
        body["prompt"] = prompt
        if stream:
            return self._stream("handle_completions", body, lambda c: c.get("text"))
        result = self._call("handle_completions", body)
        return _result(result, result["choices"][0].get("text") or "", params)

    def embed(self, texts: Sequence[str], **params: Any) -> list[list[float]]:
        """One vector per text (pooled and normalised as the model's GGUF says)."""
        self._can("embed", {Category.EMBEDDING})
        texts = _strings(texts, "texts to embed")
        if not texts:
            return []
        data = self._call("handle_embeddings", {"input": texts})["data"]
        return [list(map(float, d["embedding"])) for d in sorted(data, key=lambda d: d["index"])]

    def rerank(self, query: str, documents: Sequence[str], **params: Any) -> list[tuple[int, float]]:
        """``(index, score)`` per document, best first."""
        self._can("rerank", {Category.RERANK})
        if not isinstance(query, str):
            raise CorralError("a rerank query must be a string")
        documents = _strings(documents, "documents to rerank")
        if not documents:
            return []
        results = self._call("handle_rerank", {"query": query, "documents": documents})["results"]
        ranked = [(int(r["index"]), float(r["relevance_score"])) for r in results]
        return sorted(ranked, key=lambda r: -r[1])

    # --- calls into the engine ---------------------------------------------------------------------

    def _can(self, task: str, categories: set) -> None:
        if self.model.category not in categories:
            raise self._unsupported(task)

    def _engine(self) -> Any:
        if self.server is None:
            raise CorralError(f"{self.model.name} has been unloaded")
        return self.server

    def _body(self, params: Mapping[str, Any], schema: Mapping[str, Any] | None) -> dict[str, Any]:
        params = with_defaults(self.settings, params)
        body = request_body(params, default_seed=self._default_seed, cache_prompt=self._cache_prompt)
        if schema is not None:  # llama.cpp turns the schema into a grammar for this slot
            body["json_schema"] = dict(schema)
        top = params.get("top_logprobs")
        if params.get("logprobs") or top:
            if isinstance(top, bool) or not isinstance(top or 0, int) or not 0 <= (top or 0) <= 20:
                raise InvalidRequest("top_logprobs must be an integer from 0 to 20")
            # llama.cpp reports a token's own probability only beside at least one alternative.
            body["logprobs"], body["top_logprobs"], body["n_probs"] = True, max(1, top or 0), max(1, top or 0)
        return body

    def _call(self, handler: str, body: dict[str, Any]) -> dict[str, Any]:
        result = getattr(self._engine(), handler)(body)
        if not isinstance(result, Mapping):
            raise CorralError(f"{self.model.name}: llama.cpp answered {type(result).__name__}, not an object")
        if "error" in result:
            raise self._failed(result["error"])
        return dict(result)

    def _stream(self, handler: str, body: dict[str, Any], text_of, answer: Any = None) -> Iterator[Any]:
        body["stream"] = True
        engine = self._engine()
        chunks: queue.Queue = queue.Queue()
        cancelled = threading.Event()

        def on_chunk(chunk: Any) -> bool:
            chunks.put(chunk)
            return cancelled.is_set()  # True stops the engine's stream (the request is cancelled)

        def run() -> None:
            try:
                getattr(engine, handler)(body, on_chunk)
            except BaseException as exc:  # handed to the consumer, raised there
                chunks.put(exc)
            finally:
                chunks.put(_END)

        worker = threading.Thread(target=run, name=f"corral-llama-server-{self.model.name}", daemon=True)
        worker.start()
        return self._pieces(chunks, worker, cancelled, text_of, answer)

    def _pieces(self, chunks: queue.Queue, worker: threading.Thread, cancelled: threading.Event, text_of,
                answer: Any):
        """The text of the engine's chunks (run through ``answer``, a corral.tools answer stream, when the
        answer has structure); returns
        the :class:`ChatResult` of the end: why it ended, the token counts, the calls and the thought."""
        finish_reason, count, prompt_tokens, completion_tokens = "stop", 0, None, None
        try:
            while (chunk := chunks.get()) is not _END:
                if isinstance(chunk, BaseException):
                    raise CorralError(f"{self.model.name}: llama.cpp could not answer: {chunk}")
                if "error" in chunk:
                    raise self._failed(chunk["error"])
                usage = chunk.get("usage") or {}
                if usage:
                    prompt_tokens, completion_tokens = usage.get("prompt_tokens"), usage.get("completion_tokens")
                for choice in chunk.get("choices") or ():
                    if choice.get("finish_reason"):
                        finish_reason = choice["finish_reason"]
                    piece = text_of(choice)
                    if piece:
                        count += 1
                        if answer is None:
                            yield piece
                        elif delta := answer.feed(piece):
                            yield _plain(delta)
        finally:
            cancelled.set()
            worker.join()
        shaped = None
        if answer is not None:
            last, shaped = answer.close()
            if last:
                yield _plain(last)
        return ChatResult(
            text="",
            finish_reason=reason(finish_reason, shaped.finish_reason) if shaped else finish_reason,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens if completion_tokens is not None else count,
            tool_calls=shaped.tool_calls if shaped else (),
            reasoning=shaped.reasoning if shaped else None,
        )

    def _failed(self, error: Any) -> CorralError:
        if not isinstance(error, Mapping):
            return CorralError(f"{self.model.name}: llama.cpp could not answer: {error}")
        message = str(error.get("message") or error)
        if error.get("type") == "exceed_context_size_error" or "context size" in message:
            n_prompt, n_ctx = error.get("n_prompt_tokens"), error.get("n_ctx") or self._slot_context
            size = f"the prompt is {n_prompt} tokens but" if n_prompt is not None else "the request does not fit:"
            return CorralError(
                f"{self.model.name}: {size} the context holds {n_ctx}; shorten it or raise the context: "
                f"corral settings {self.model.name} --n-ctx N"
            )
        if "image" in message.lower() or "bitmap" in message.lower():
            return CorralError(f"{self.model.name}: an image could not be decoded ({message})")
        if int(error.get("code") or 500) == 400:
            return InvalidRequest(f"{self.model.name}: {message}")
        return CorralError(f"{self.model.name}: llama.cpp could not answer: {message}")


def _result(result: Mapping[str, Any], text: str, params: Mapping[str, Any], shaped: Any = None) -> ChatResult:
    """A :class:`ChatResult` of the engine's answer; ``shaped``: its content, thought and calls as
    Corral's parsers split them."""
    choice = result["choices"][0]
    usage = result.get("usage") or {}
    finish_reason = choice.get("finish_reason") or "stop"
    return ChatResult(
        text=shaped.content if shaped else text,
        finish_reason=reason(finish_reason, shaped.finish_reason) if shaped else finish_reason,
        prompt_tokens=usage.get("prompt_tokens"),
        completion_tokens=usage.get("completion_tokens"),
        tool_calls=shaped.tool_calls if shaped else (),
        reasoning=shaped.reasoning if shaped else None,
        logprobs=_logprobs(choice.get("logprobs"), int(params.get("top_logprobs") or 0))
        if params.get("logprobs") or params.get("top_logprobs") else None,
    )


def _plain(delta: Delta) -> Any:
    """A delta holding only content goes out as the plain text piece older callers expect."""
    return delta if delta.reasoning or delta.tool_calls or delta.logprobs else delta.content


def _logprobs(found: Any, top: int) -> tuple[TokenLogprob, ...] | None:
    """llama-server's per-token log-probabilities (OpenAI's ``content`` list) as Corral's records."""
    if not isinstance(found, Mapping) or not isinstance(found.get("content"), list):
        return None
    return tuple(
        TokenLogprob(
            token=str(entry.get("token", "")),
            logprob=float(entry.get("logprob", 0.0)),
            bytes=tuple(entry.get("bytes") or ()),
            top=tuple((str(t.get("token", "")), float(t.get("logprob", 0.0))) for t in (entry.get("top_logprobs") or ())[:top]),
        )
        for entry in found["content"]
    )


def _checked(messages: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
        raise CorralError("messages must be a list of {role, content} objects")
    for message in messages:
        if not isinstance(message, Mapping) or not isinstance(message.get("role"), str):
            raise CorralError(f"each message needs a role and a content, got {message!r}")
    if not messages:
        raise CorralError("a chat needs at least one message")
    return list(messages)


def _strings(values: Any, what: str) -> list[str]:
    if isinstance(values, str) or not isinstance(values, Sequence) or not all(isinstance(v, str) for v in values):
        raise CorralError(f"the {what} must be a list of strings")
    return list(values)
