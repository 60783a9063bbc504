"""A causal LM loaded through transformers: chat (the tokenizer's chat template), completion, streaming,
what the load took, unload."""

from __future__ import annotations

from typing import Any, Iterator, Mapping, Sequence

from corral.api import LoadedModel, free_torch_memory
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
    template_switch,
    thinking_off,
    with_tools_prompt,
)

from corral_transformers import chat_template, generate, penalties
from corral_transformers.options import LoadOptions

#: Request fields beyond sampling that chat reads (OpenAI shapes; see LoadedModel.chat).
FEATURES = ("tools", "tool_choice", "parallel_tool_calls", "response_format", "logprobs", "top_logprobs",
            "reasoning_effort")
#: The most alternatives per token ``top_logprobs`` may ask (OpenAI's limit).
MAX_TOP_LOGPROBS = 20


class TransformersModel(LoadedModel):
    """A live transformers model and tokenizer, with the PEFT adapters applied to it (if any).

    ``lm`` and ``tokenizer`` are the transformers objects themselves, for callers that need more than
    chat and completion (logits, embeddings of the last layer).
    """

    #: What generate honours; the server refuses other fields by name.
    request_fields = frozenset(generate.PARAMS) | {"stop", *FEATURES}

    def __init__(
        self,
        model: Model,
        settings: Mapping[str, Any],
        loras: Sequence[LoraRequest],
        *,
        lm: Any,
        tokenizer: Any,
        options: LoadOptions,
        chat_template: str | None,
        adapters: Sequence[Any] = (),
        memory: Mapping[str, int] | None = None,
    ) -> None:
        super().__init__(model, settings, loras)
        self.lm = lm
        self.tokenizer = tokenizer
        self.options = options
        self.chat_template = chat_template
        self.adapters = tuple(adapters)
        self._memory = dict(memory or {"ram": 0, "vram": 0})
        seed = settings.get("seed")
        self._default_seed = int(seed) if seed is not None else None
        self.eos_ids = self._eos_ids()

    # --- what the load gave ------------------------------------------------------------------------

    @property
    def context_length(self) -> int:
        """Tokens a prompt and its answer may take together: ``n_ctx``, else the model's own maximum."""
        n_ctx = int(self.settings.get("n_ctx") or 0)
        if n_ctx:
            return n_ctx
        config = self._lm().config
        for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
            value = getattr(config, name, None)
            if isinstance(value, int) and value > 0:
                return value
        limit = getattr(self.tokenizer, "model_max_length", None)
        return limit if isinstance(limit, int) and 0 < limit < 10**8 else 2048

    @property
    def device(self) -> Any:
        """Where the inputs go: the model's device, or under a device map the first GPU it uses (accelerate
        moves activations between the devices, and brings offloaded weights to them)."""
        import torch

        lm = self._lm()
        placed = getattr(lm, "hf_device_map", None)
        if not placed:
            return lm.device
        for where in placed.values():
            if isinstance(where, int):
                return torch.device("cuda", where)
            if str(where) not in ("cpu", "disk", "meta"):
                return torch.device(where)
        return torch.device("cpu")

    def memory(self) -> dict[str, int]:
        """RAM and VRAM the load took, measured around it (bytes)."""
        return dict(self._memory)

    def unload(self) -> None:
        """Drop the model and give cached GPU memory back, now rather than whenever the collector runs."""
        self.lm = None
        self.tokenizer = None
        free_torch_memory()

    # --- tasks ---------------------------------------------------------------------------------------

    def render(self, messages: Sequence[Mapping[str, Any]]) -> str:
        """The prompt text ``chat`` sends the model for ``messages`` (the chat template applied)."""
        return chat_template.render(self._tokenizer(), messages, override=self.chat_template,
                                    model_name=self.model.name)

    def chat(self, messages: Sequence[Mapping[str, Any]], *, stream: bool = False, **params: Any) -> Any:
        """Answer OpenAI-style ``messages``: a :class:`ChatResult`, or with ``stream=True`` text pieces.

        ``tools`` / ``tool_choice`` / ``parallel_tool_calls`` (rendered by ``apply_chat_template(tools=)``,
        calls parsed per family), ``response_format`` (enforced by llguidance), ``logprobs`` /
        ``top_logprobs`` and ``reasoning_effort`` as in OpenAI's chat completions."""
        messages = with_system_prompt(self.settings, messages)
        rest = {k: v for k, v in params.items() if k not in FEATURES}
        tools = read_tools(params.get("tools"), params.get("tool_choice"), params.get("parallel_tool_calls"))
        tools = tools if tools is not None and tools.choice != "none" else None
        fmt = read_response_format(params.get("response_format"))
        effort = read_effort(params.get("reasoning_effort"))
        source = self.chat_template or getattr(self._tokenizer(), "chat_template", None) or ""
        if not isinstance(source, str):
            source = str(source)
        variables: dict[str, Any] = {}
        if thinking_off(self.settings, effort) and template_switch(source):
            variables["enable_thinking"] = False
        if "tool" not in source:
            messages = plain_tool_messages(chat_template.text_messages(messages, self.model.name))
        tool_list = None
        if tools is not None:
            if "tools" in source:
                tool_list = tools.template_tools()
            else:
                messages = with_tools_prompt(messages, tools)
        prompt = chat_template.render(self._tokenizer(), messages, override=self.chat_template,
                                      model_name=self.model.name, tools=tool_list, **variables)
        schema, family = None, family_of(source)
        if tools is not None and tools.forced:
            if fmt.constrained:
                raise InvalidRequest("response_format cannot be combined with a tool_choice that forces a call")
            schema, family = call_schema(tools), "json"
        elif fmt.constrained:
            schema = fmt.json_schema()
        thinks = "</think>" in source
        shape = AnswerShape(family=family, tools=tools, opened=thinks and opens_thought(prompt),
                            reasoning=thinks and schema is None)
        processors = self._grammar(schema) if schema is not None else ()
        result = self._run(prompt, stream, with_defaults(self.settings, rest), processors=processors,
                           top_logprobs=_top_logprobs(params))
        if schema is None and tools is None and not thinks:
            return result
        return self._shaped(result, shape) if stream else _finished(result, shape)

    def complete(self, prompt: str, *, stream: bool = False, **params: Any) -> Any:
        """Continue ``prompt`` as plain text (no chat template); the tokenizer adds its BOS as usual.
        ``response_format``, ``logprobs`` / ``top_logprobs`` as for :meth:`chat`."""
        if not isinstance(prompt, str):
            raise CorralError("a completion prompt must be a string")
        if params.get("tools") is not None:
            raise InvalidRequest("tools need a chat; a plain completion cannot call them")
        fmt = read_response_format(params.get("response_format"))
        processors = self._grammar(fmt.json_schema()) if fmt.constrained else ()
        rest = {k: v for k, v in params.items() if k not in FEATURES}
        return self._run(prompt, stream, with_defaults(self.settings, rest), special=True, processors=processors,
                         top_logprobs=_top_logprobs(params))

    def _grammar(self, schema: Mapping[str, Any]) -> tuple[Any, ...]:
        """The logits processors that hold decoding to ``schema`` (llguidance)."""
        from corral_transformers import structured

        grammar = structured.compile_schema(schema)
        return (structured.logits_processor(self._tokenizer(), grammar, self._lm().config.vocab_size),)

    # --- generation --------------------------------------------------------------------------------

    def _lm(self) -> Any:
        if self.lm is None:
            raise CorralError(f"{self.model.name} has been unloaded")
        return self.lm

    def _tokenizer(self) -> Any:
        if self.tokenizer is None:
            raise CorralError(f"{self.model.name} has been unloaded")
        return self.tokenizer

    def _eos_ids(self) -> frozenset[int]:
        ids: set[int] = set()
        eos = getattr(getattr(self.lm, "generation_config", None), "eos_token_id", None)
        for value in eos if isinstance(eos, (list, tuple)) else [eos]:
            if isinstance(value, int):
                ids.add(value)
        if isinstance(getattr(self.tokenizer, "eos_token_id", None), int):
            ids.add(self.tokenizer.eos_token_id)
        return frozenset(ids)

    def _inputs(self, text: str, special: bool) -> dict[str, Any]:
        # A rendered chat template already carries the model's BOS and turn markers: add nothing to it.
        encoded = self._tokenizer()(text, return_tensors="pt", add_special_tokens=special)
        device = self.device
        return {k: v.to(device) for k, v in encoded.items() if k in ("input_ids", "attention_mask")}

    def _shaped(self, pieces: Iterator[str], shape: AnswerShape) -> Iterator[Any]:
        """Streamed text shaped into reasoning, content and tool-call deltas."""
        answer = shape.stream()
        iterator = iter(pieces)
        while True:
            try:
                piece = next(iterator)
            except StopIteration as end:
                ended = end.value
                break
            delta = answer.feed(piece.content, piece.logprobs) if isinstance(piece, Delta) else answer.feed(piece)
            if delta:
                yield delta.content if not (delta.reasoning or delta.tool_calls or delta.logprobs) else delta
        last, shaped = answer.close()
        if last:
            yield last
        reason = ended.finish_reason if ended is not None else "stop"
        return ChatResult(text="", finish_reason="length" if reason == "length" else shaped.finish_reason or reason,
                          prompt_tokens=getattr(ended, "prompt_tokens", None),
                          completion_tokens=getattr(ended, "completion_tokens", None),
                          tool_calls=shaped.tool_calls, reasoning=shaped.reasoning)

    def _run(self, text: str, stream: bool, params: Mapping[str, Any], *, special: bool = False,
             processors: tuple[Any, ...] = (), top_logprobs: int | None = None) -> Any:
        request = generate.parse(params, default_seed=self._default_seed)
        penalty = penalties.processor(request.values, int(self._lm().config.vocab_size))
        if penalty is not None:
            processors = (penalty, *processors)  # before a grammar's mask, which has the last word
        recorder = None
        if top_logprobs is not None:
            from corral_transformers.logprobs import Recorder

            recorder = Recorder(self._tokenizer(), top_logprobs)
        if processors or recorder is not None:
            import attrs

            request = attrs.evolve(request, processors=processors, logprobs=recorder)
        inputs = self._inputs(text, special)
        n_prompt = int(inputs["input_ids"].shape[1])
        room = self.context_length - n_prompt
        if room <= 0:
            raise InvalidRequest(
                f"{self.model.name}: the prompt is {n_prompt} tokens but the context holds {self.context_length}; "
                f"shorten it or raise the context: corral settings {self.model.name} --n-ctx N"
            )
        max_new = min(request.max_tokens or room, room)
        tokenizer = self._tokenizer()
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else next(iter(self.eos_ids), None)
        config = generate.generation_config(self._lm().generation_config, request, max_new_tokens=max_new,
                                            pad_token_id=pad)
        outcome = generate.Outcome(prompt_tokens=n_prompt)
        args = (self._lm(), tokenizer, inputs, config, request, outcome)
        if stream:
            return self._pieces(generate.stream_text(*args, eos_ids=self.eos_ids), outcome)
        try:
            text = generate.generate_text(*args, eos_ids=self.eos_ids)
        except CorralError:
            raise
        except Exception as exc:  # a runtime error inside the model (device mismatch, out of memory)
            raise self._failed(exc) from None
        return ChatResult(
            text=text,
            finish_reason=outcome.finish_reason,
            prompt_tokens=outcome.prompt_tokens,
            completion_tokens=outcome.completion_tokens,
            logprobs=tuple(recorder.items) if recorder is not None else None,
        )

    def _pieces(self, pieces: Iterator[str], outcome: generate.Outcome) -> Iterator[str]:
        """The streamed text; returns why it ended and the token counts once generation is over."""
        try:
            yield from pieces
        except CorralError as exc:
            cause = exc.__cause__
            raise (self._failed(cause) if cause is not None else exc) from None
        return ChatResult(text="", finish_reason=outcome.finish_reason, prompt_tokens=outcome.prompt_tokens,
                          completion_tokens=outcome.completion_tokens)

    def _failed(self, exc: BaseException) -> CorralError:
        if isinstance(exc, CorralError):
            return exc
        why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return CorralError(f"{self.model.name}: transformers could not generate ({type(exc).__name__}: {why})")


def _top_logprobs(params: Mapping[str, Any]) -> int | None:
    """How many alternatives per token the request asks (None: no log-probabilities)."""
    if not params.get("logprobs"):
        return None
    top = params.get("top_logprobs") or 0
    if isinstance(top, bool) or not isinstance(top, int) or not 0 <= top <= MAX_TOP_LOGPROBS:
        raise InvalidRequest(f"top_logprobs must be an integer from 0 to {MAX_TOP_LOGPROBS}")
    return top


def _finished(result: ChatResult, shape: AnswerShape) -> ChatResult:
    import attrs

    shaped = shape.finish(result.text.strip() if shape.family == "json" else result.text)
    reason = "length" if result.finish_reason == "length" else shaped.finish_reason or result.finish_reason
    return attrs.evolve(result, text=shaped.content, finish_reason=reason, tool_calls=shaped.tool_calls,
                        reasoning=shaped.reasoning)
