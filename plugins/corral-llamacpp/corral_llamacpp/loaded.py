"""A model loaded in llama.cpp: chat (plain or with images), completion, what it took, unload."""

from __future__ import annotations

from typing import Any, Iterator, Mapping, Sequence

from corral.api import LoadedModel
from corral.api import CorralError, InvalidRequest
from corral.api import ChatResult, LoraRequest, Model
from corral.api import with_defaults, with_system_prompt
from corral.api import (
    AnswerShape,
    Delta,
    call_schema,
    family_of,
    opens_thought,
    plain_tool_messages,
    read_effort,
    read_response_format,
    read_tools,
    template_messages,
    template_switch,
    thinking_off,
    with_tools_prompt,
)

from corral_llamacpp import images
from corral_llamacpp.sampling import PARAMS, sampling
from corral_llamacpp.templates import ChatTemplate, Renderer

#: Request fields beyond sampling that chat reads (see LoadedModel.chat).
FEATURES = ("tools", "tool_choice", "parallel_tool_calls", "response_format", "logprobs", "top_logprobs",
            "reasoning_effort")
#: The most alternatives per token ``top_logprobs`` may ask (OpenAI's limit).
MAX_TOP_LOGPROBS = 20


class LlamaCppModel(LoadedModel):
    """A live ``llama_cpp.Llama`` with the chat template Corral chose for it (and its projector, if any)."""

    request_fields = frozenset(PARAMS) | {"stop", "logit_bias", *FEATURES}

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

    @property
    def tool_family(self) -> str | None:
        """How this model writes tool calls (:data:`corral.tools.FAMILIES`), from its chat template."""
        return family_of(self.renderer.template.source) if self.renderer else None

    def render(self, messages: Sequence[Mapping[str, Any]], **params: Any) -> str:
        """The prompt text :meth:`chat` sends for ``messages`` and ``params`` (tools rendered through
        the template, thinking switched off where asked)."""
        if self.renderer is None:
            raise InvalidRequest(f"{self.model.name} uses a llama-cpp-python chat_format; Corral renders no prompt")
        messages = images.text_messages(with_system_prompt(self.settings, _checked(messages)), self.model.name)
        return self._prepare(messages, _Asked.read(params))[0]

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
        """Answer OpenAI-style ``messages``: a :class:`ChatResult`, or with ``stream=True`` text pieces
        (:class:`Delta` pieces where the answer has structure: reasoning, tool calls, log-probabilities).

        ``tools`` / ``tool_choice`` / ``parallel_tool_calls``, ``response_format``, ``logprobs`` /
        ``top_logprobs`` and ``reasoning_effort`` as in OpenAI's chat completions (see docs/http.md)."""
        messages = with_system_prompt(self.settings, _checked(messages))
        asked = _Asked.read(params)
        params = with_defaults(self.settings, asked.rest)
        args = sampling(params, default_seed=self._default_seed)
        self._fresh_if_seeded(params)
        if self.renderer is not None:
            args["stop"] = list(dict.fromkeys([*args["stop"], *self.renderer.template.stops]))
        if asked.any and (self.renderer is None or images.has_images(messages)):
            where = "with images" if self.renderer is not None else "with the chat_format setting"
            raise InvalidRequest(f"{self.model.name}: {asked.first} is not supported {where}; "
                                 "it needs Corral's chat template path")
        if images.has_images(messages):
            if self.projector is None:
                images.text_messages(messages, self.model.name)  # raises the "no mmproj" message
            images.check_image_roles(messages)
            # llama.chat_handler is the projector: it renders the template around the images itself.
            return self._chat_completion([dict(m) for m in messages], stream, args)
        messages = images.text_messages(messages, self.model.name)
        if self.renderer is None:  # the chat_format setting: one of llama-cpp-python's own formats
            return self._chat_completion(messages, stream, args)
        prompt, shape, schema = self._prepare(messages, asked)
        tokens = self._tokenize(prompt, special=True)
        if schema is None and not asked.logprobs and shape.tools is None and not shape.reasoning:
            return self._generate(tokens, stream, args, stop_ids=self._stop_ids)
        from corral_llamacpp.structured import gbnf

        grammar = gbnf(schema) if schema is not None else None
        return self._decode(tokens, stream, args, shape=shape, grammar=grammar, asked=asked)

    def _prepare(self, messages: list[dict[str, Any]], asked: "_Asked") -> tuple[str, AnswerShape, Any]:
        """The prompt (tools and thinking switch rendered through the model's template), how to read the
        answer, and the JSON schema decoding must follow (None: free)."""
        assert self.renderer is not None
        source = self.renderer.template.source
        tools = asked.tools if asked.tools is not None and asked.tools.choice != "none" else None
        extra: dict[str, Any] = {}
        family = family_of(source)
        messages = template_messages(messages)
        if "tool" not in source:  # a template that knows no tool turns (Gemma's)
            messages = plain_tool_messages(messages)
        if tools is not None:
            if "tools" in source:
                extra["tools"] = tools.template_tools()
            else:  # a template with no place for tools: describe them in the system message
                messages = with_tools_prompt(messages, tools)
        if thinking_off(self.settings, asked.effort) and template_switch(source):
            extra["enable_thinking"] = False
        prompt = self.renderer.render(messages, **extra)
        schema = None
        if tools is not None and tools.forced:
            if asked.format.constrained:
                raise InvalidRequest("response_format cannot be combined with a tool_choice that forces a call")
            schema, family = call_schema(tools), "json"
        elif asked.format.constrained:
            schema = asked.format.json_schema()
        thinks = "</think>" in source
        shape = AnswerShape(family=family, tools=tools, opened=thinks and opens_thought(prompt),
                            reasoning=thinks and schema is None)
        return prompt, shape, schema

    def complete(self, prompt: str, *, stream: bool = False, **params: Any) -> Any:
        """Continue ``prompt`` as plain text (no chat template); ``logprobs`` / ``top_logprobs`` and
        ``response_format`` as for :meth:`chat`."""
        if not isinstance(prompt, str):
            raise CorralError("a completion prompt must be a string")
        asked = _Asked.read(params)
        if asked.tools is not None:
            raise InvalidRequest("tools need a chat; a plain completion cannot call them")
        params = with_defaults(self.settings, asked.rest)
        args = sampling(params, default_seed=self._default_seed)
        self._fresh_if_seeded(params)
        tokens = self._tokenize(prompt, special=True)
        if not asked.logprobs and not asked.format.constrained:
            return self._generate(tokens, stream, args)
        from corral_llamacpp.structured import gbnf

        grammar = gbnf(asked.format.json_schema()) if asked.format.constrained else None
        return self._decode(tokens, stream, args, shape=AnswerShape(reasoning=False), grammar=grammar, asked=asked)

    def _decode(self, tokens: list[int], stream: bool, args: dict[str, Any], *, shape: AnswerShape,
                grammar: str | None, asked: "_Asked") -> Any:
        """Corral's own token loop (corral_llamacpp.decode): grammars, log-probabilities, tool markup."""
        from corral_llamacpp.decode import Decoder

        self._check_room(len(tokens))
        decoder = Decoder(self._llm(), tokens, args, grammar=grammar,
                          top_logprobs=asked.top_logprobs if asked.logprobs else None,
                          stop_ids=self._stop_ids if self.renderer is not None else frozenset())
        steps = _stop_strings(decoder.steps(), args.get("stop") or ())
        if stream:
            return self._deltas(steps, decoder, shape, len(tokens))
        pieces, logprobs = [], []
        for step in steps:
            pieces.append(step.text)
            if step.logprob is not None:
                logprobs.append(step.logprob)
        text = "".join(pieces)
        shaped = shape.finish(text.strip() if grammar else text)
        return ChatResult(
            text=shaped.content, finish_reason=_reason(decoder.finish.reason, shaped.finish_reason),
            prompt_tokens=len(tokens), completion_tokens=decoder.finish.tokens, tool_calls=shaped.tool_calls,
            reasoning=shaped.reasoning, logprobs=tuple(logprobs) if asked.logprobs else None,
        )  # fmt: skip

    def _deltas(self, steps, decoder, shape: AnswerShape, n_prompt: int) -> Iterator[Any]:
        """Streamed pieces: plain text where the answer has no structure, else :class:`Delta` objects."""
        answer = shape.stream()
        for step in steps:
            delta = answer.feed(step.text, () if step.logprob is None else (step.logprob,))
            if delta:
                yield _plain(delta)
        last, shaped = answer.close()
        if last:
            yield _plain(last)
        return ChatResult(text="", finish_reason=_reason(decoder.finish.reason, shaped.finish_reason),
                          prompt_tokens=n_prompt, completion_tokens=decoder.finish.tokens,
                          tool_calls=shaped.tool_calls, reasoning=shaped.reasoning)

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
            raise InvalidRequest(
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


def _reason(generated: str, shaped: str | None) -> str:
    """``length`` when the answer was cut short (even in the middle of a call), else ``tool_calls``
    when it made calls, else why generation stopped."""
    return "length" if generated == "length" else shaped or generated


def _plain(delta: Delta) -> Any:
    """A delta holding only content goes out as the plain text piece older callers expect."""
    if not (delta.reasoning or delta.tool_calls or delta.logprobs):
        return delta.content
    return delta


def _stop_strings(steps, stops: Sequence[str]):
    """Steps cut at the first stop string; text that could begin one is held back until told apart."""
    from corral_llamacpp.decode import Step

    stops = tuple(s for s in stops if s)
    if not stops:
        yield from steps
        return
    pending = ""
    held: list[Any] = []
    for step in steps:
        text = pending + step.text
        if step.logprob is not None:
            held.append(step.logprob)
        cuts = [i for i in (text.find(s) for s in stops) if i >= 0]
        if cuts:
            yield Step(text[: min(cuts)], held[0] if held else None)
            return
        keep = 0
        for stop in stops:
            for n in range(min(len(stop) - 1, len(text)), keep, -1):
                if text.endswith(stop[:n]):
                    keep = n
                    break
        pending = text[len(text) - keep:] if keep else ""
        shown = text[: len(text) - keep]
        for i, logprob in enumerate(held):
            yield Step(shown if i == 0 else "", logprob)
        if not held and shown:
            yield Step(shown)
        held = []
    if pending:
        yield Step(pending)


class _Asked:
    """The request fields beyond sampling, checked (shapes as in OpenAI's chat completions)."""

    def __init__(self, params: Mapping[str, Any]) -> None:
        self.rest = {k: v for k, v in params.items() if k not in FEATURES}
        given = [k for k in FEATURES if params.get(k) not in (None, False)]
        self.first = given[0] if given else ""
        self.tools = read_tools(params.get("tools"), params.get("tool_choice"), params.get("parallel_tool_calls"))
        self.format = read_response_format(params.get("response_format"))
        self.logprobs = bool(params.get("logprobs"))
        top = params.get("top_logprobs")
        if top is not None and (isinstance(top, bool) or not isinstance(top, int) or not 0 <= top <= MAX_TOP_LOGPROBS):
            raise InvalidRequest(f"top_logprobs must be an integer from 0 to {MAX_TOP_LOGPROBS}, got {top!r}")
        if top and not self.logprobs:
            raise InvalidRequest("top_logprobs needs logprobs: true")
        self.top_logprobs = int(top or 0)
        self.effort = read_effort(params.get("reasoning_effort"))
        self.any = bool(self.tools is not None or self.format.constrained or self.logprobs)

    @classmethod
    def read(cls, params: Mapping[str, Any]) -> "_Asked":
        return cls(params)
