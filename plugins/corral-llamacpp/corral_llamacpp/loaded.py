"""A model loaded in llama.cpp: chat (plain or with images), completion, what it took, unload."""

from __future__ import annotations

from typing import Any, Iterator, Mapping, Sequence

from corral.driver import LoadedModel
from corral.errors import CorralError
from corral.records import ChatResult, LoraRequest, Model
from corral.sampling import with_defaults, with_system_prompt

from corral_llamacpp import images
from corral_llamacpp.sampling import sampling
from corral_llamacpp.templates import ChatTemplate, Renderer


class LlamaCppModel(LoadedModel):
    """A live ``llama_cpp.Llama`` with the chat template Corral chose for it (and its projector, if any)."""

    def __init__(
        self,
        model: Model,
        settings: Mapping[str, Any],
        loras: Sequence[LoraRequest],
        *,
        llama: Any,
        renderer: Renderer | None,
        chat_format: str | None,
        projector: Any = None,
        memory: Mapping[str, int] | None = None,
    ) -> None:
        super().__init__(model, settings, loras)
        self.llama = llama
        self.renderer = renderer
        self.chat_format = chat_format
        self.projector = projector
        self._memory = dict(memory or {"ram": 0, "vram": 0})
        seed = settings.get("seed")
        self._default_seed = int(seed) if seed is not None else None
        self._stop_ids = self._special_ids(renderer.template.stops if renderer else ())

    # --- what the load gave ------------------------------------------------------------------------

    @property
    def context_length(self) -> int:
        """The context llama.cpp allocated, in tokens."""
        return self._llm().n_ctx()

    @property
    def template(self) -> ChatTemplate | None:
        """The chat template in use (None when a llama-cpp-python ``chat_format`` replaces it)."""
        return self.renderer.template if self.renderer else None

    def memory(self) -> dict[str, int]:
        """RAM and VRAM the load took, measured around it (bytes)."""
        return dict(self._memory)

    def unload(self) -> None:
        """Free the model, its context and its projector now, not whenever the garbage collector runs."""
        llm, self.llama, self.projector = self.llama, None, None
        if llm is not None:
            llm.close()

    # --- tasks ---------------------------------------------------------------------------------------

    def chat(self, messages: Sequence[Mapping[str, Any]], *, stream: bool = False, **params: Any) -> Any:
        """Answer OpenAI-style ``messages``: a :class:`ChatResult`, or with ``stream=True`` text pieces."""
        messages = with_system_prompt(self.settings, _checked(messages))
        params = with_defaults(self.settings, params)
        args = sampling(params, default_seed=self._default_seed)
        self._fresh_if_seeded(params)
        if self.renderer is not None:
            args["stop"] = list(dict.fromkeys([*args["stop"], *self.renderer.template.stops]))
        if images.has_images(messages):
            if self.projector is None:
                images.text_messages(messages, self.model.name)  # raises the "no mmproj" message
            images.check_image_roles(messages)
            # llama.chat_handler is the projector: it renders the template around the images itself.
            return self._chat_completion([dict(m) for m in messages], stream, args)
        messages = images.text_messages(messages, self.model.name)
        if self.renderer is None:  # the chat_format setting: one of llama-cpp-python's own formats
            return self._chat_completion(messages, stream, args)
        tokens = self._tokenize(self.renderer.render(messages), special=True)
        return self._generate(tokens, stream, args, stop_ids=self._stop_ids)

    def complete(self, prompt: str, *, stream: bool = False, **params: Any) -> Any:
        """Continue ``prompt`` as plain text (no chat template)."""
        if not isinstance(prompt, str):
            raise CorralError("a completion prompt must be a string")
        params = with_defaults(self.settings, params)
        args = sampling(params, default_seed=self._default_seed)
        self._fresh_if_seeded(params)
        return self._generate(self._tokenize(prompt, special=True), stream, args)

    # --- generation --------------------------------------------------------------------------------

    def _llm(self) -> Any:
        if self.llama is None:
            raise CorralError(f"{self.model.name} has been unloaded")
        return self.llama

    def _tokenize(self, text: str, *, special: bool) -> list[int]:
        llm = self._llm()
        # add_bos=True adds BOS only where the vocabulary asks for it; templates that write {{ bos_token }}
        # already start with one, and a doubled BOS degrades the answer.
        tokens = llm.tokenize(text.encode("utf-8"), add_bos=True, special=special)
        bos = llm.token_bos()
        if bos >= 0 and tokens[:2] == [bos, bos]:
            del tokens[0]
        return tokens

    def _special_ids(self, texts: Sequence[str]) -> frozenset[int]:
        """Token ids of the turn-ending strings that the vocabulary holds as single special tokens."""
        if self.llama is None:
            return frozenset()
        ids = set()
        for text in texts:
            tokens = self.llama.tokenize(text.encode("utf-8"), add_bos=False, special=True)
            if len(tokens) == 1:
                ids.add(tokens[0])
        return frozenset(ids)

    def _check_room(self, n_prompt: int) -> None:
        n_ctx = self._llm().n_ctx()
        if n_prompt >= n_ctx:
            raise CorralError(
                f"{self.model.name}: the prompt is {n_prompt} tokens but the context holds {n_ctx}; "
                f"shorten it or raise the context: corral settings {self.model.name} --n-ctx N"
            )

    def _fresh_if_seeded(self, params: Mapping[str, Any]) -> None:
        """A seeded request must repeat exactly. Reusing the KV cache of an earlier prompt evaluates this one
        in different batches, which moves the logits by rounding noise and, when sampling, the answer; so a
        seeded request evaluates its whole prompt afresh."""
        if params.get("seed") is not None or self._default_seed is not None:
            self._llm().reset()

    def _generate(self, tokens: list[int], stream: bool, args: dict[str, Any], stop_ids=frozenset()) -> Any:
        llm = self._llm()
        self._check_room(len(tokens))
        criteria = _stop_on_tokens(stop_ids, len(tokens)) if stop_ids else None
        try:
            result = llm.create_completion(prompt=tokens, stream=stream, stopping_criteria=criteria, **args)
        except (ValueError, RuntimeError) as exc:
            raise self._failed(exc) from None
        if stream:
            return self._pieces(result, lambda choice: choice.get("text"), prompt_tokens=len(tokens))
        choice = result["choices"][0]
        usage = result.get("usage") or {}
        return ChatResult(
            text=choice["text"],
            finish_reason=choice.get("finish_reason") or "stop",
            prompt_tokens=usage.get("prompt_tokens"),
            completion_tokens=usage.get("completion_tokens"),
        )

    def _chat_completion(self, messages: list[dict[str, Any]], stream: bool, args: dict[str, Any]) -> Any:
        llm = self._llm()
        try:
            result = llm.create_chat_completion(messages=messages, stream=stream, **args)
        except (ValueError, RuntimeError) as exc:
            raise self._failed(exc) from None
        if stream:
            return self._pieces(result, lambda choice: choice.get("delta", {}).get("content"), prompt_tokens=None)
        choice = result["choices"][0]
        usage = result.get("usage") or {}
        return ChatResult(
            text=choice["message"].get("content") or "",
            finish_reason=choice.get("finish_reason") or "stop",
            prompt_tokens=usage.get("prompt_tokens"),
            completion_tokens=usage.get("completion_tokens"),
        )

    def _pieces(self, chunks: Iterator[dict], text_of, *, prompt_tokens: int | None) -> Iterator[str]:
        """The text of llama-cpp-python's chunks; returns why the answer ended and its token count (one
        chunk per token, as llama-cpp-python's own usage counts them; a chat stream's role chunk and the
        final chunk carry none)."""
        finish_reason, count = "stop", 0
        try:
            for chunk in chunks:
                choice = chunk["choices"][0]
                if choice.get("finish_reason"):
                    finish_reason = choice["finish_reason"]
                elif "text" in choice or "content" in (choice.get("delta") or {}):
                    count += 1
                piece = text_of(choice)
                if piece:
                    yield piece
        except (ValueError, RuntimeError) as exc:
            raise self._failed(exc) from None
        return ChatResult(text="", finish_reason=finish_reason, prompt_tokens=prompt_tokens, completion_tokens=count)

    def _failed(self, exc: Exception) -> CorralError:
        from corral_llamacpp import logs

        if isinstance(exc, CorralError):
            return exc
        if "bitmap" in str(exc):
            return CorralError(f"{self.model.name}: an image could not be decoded (PNG, JPEG, BMP or GIF expected)")
        why = logs.last_error()
        detail = f"{exc}" + (f" ({why})" if why and why not in str(exc) else "")
        return CorralError(f"{self.model.name}: llama.cpp could not answer: {detail}")


def _checked(messages: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
        raise CorralError("messages must be a list of {role, content} objects")
    for message in messages:
        if not isinstance(message, Mapping) or not isinstance(message.get("role"), str):
            raise CorralError(f"each message needs a role and a content, got {message!r}")
    if not messages:
        raise CorralError("a chat needs at least one message")
    return list(messages)


def _stop_on_tokens(stop_ids: frozenset[int], n_prompt: int):
    """A stopping criterion for special tokens that end the model's turn but that the vocabulary does not
    mark end-of-generation (Gemma's ``<start_of_turn>``): such tokens detokenize to nothing, so the stop
    strings never see them.

    llama-cpp-python calls the criterion before yielding each new token with the tokens evaluated so far,
    so the turn-ending token shows up one step later: it was already yielded, as empty text, and generation
    stops before anything after it.
    """
    import llama_cpp

    def criterion(input_ids, _logits) -> bool:
        return len(input_ids) > n_prompt and int(input_ids[-1]) in stop_ids

    return llama_cpp.StoppingCriteriaList([criterion])
