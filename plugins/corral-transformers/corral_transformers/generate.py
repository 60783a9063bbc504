"""Text generation with transformers: a request's sampling parameters, plain and streamed answers, stop
strings.

Parameter names and checks are the core's (:mod:`corral.sampling`), as for the llama.cpp driver;
parameters transformers does not have are ignored, as the driver interface says (``presence_penalty``,
``frequency_penalty`` and ``logit_bias`` are applied by :mod:`corral_transformers.penalties`). Unset
parameters keep the model's own defaults (``generation_config.json``); ``temperature`` 0 means greedy
decoding. A seed (the request's, else the
model's ``seed`` setting) reseeds torch just before generating, so a seeded request repeats exactly.

Streaming runs ``generate`` on a worker thread feeding a ``TextIteratorStreamer``; the caller's side
holds back text that could be the start of a stop string, and a stopping criterion ends generation as
soon as a stop string is seen or the caller stops reading.
"""

from __future__ import annotations

import copy
import functools
import threading
from typing import Any, Iterator, Mapping, Sequence

from attrs import define, frozen

from corral.api import CorralError, Delta
from corral.api import read_sampling

#: name -> type of the parameters transformers' generate understands.
PARAMS: dict[str, type] = {
    "temperature": float,
    "top_p": float,
    "top_k": int,
    "min_p": float,
    "typical_p": float,
    "repeat_penalty": float,
    "presence_penalty": float,
    "frequency_penalty": float,
    "logit_bias": dict,
    "max_tokens": int,
    "seed": int,
}
#: Corral's name -> GenerationConfig's, for the parameters that only apply when sampling.
_SAMPLING = {"temperature": "temperature", "top_p": "top_p", "top_k": "top_k", "min_p": "min_p",
             "typical_p": "typical_p"}


@frozen
class Request:
    """A request's generation parameters, checked: only those given (None: keep the model's default)."""

    values: Mapping[str, Any]
    stop: tuple[str, ...] = ()
    seed: int | None = None
    max_tokens: int | None = None
    #: transformers LogitsProcessors applied while generating (a grammar's mask).
    processors: tuple[Any, ...] = ()
    #: A :class:`corral_transformers.logprobs.Recorder` when the request asks for log-probabilities.
    logprobs: Any = None


def parse(params: Mapping[str, Any], *, default_seed: int | None = None) -> Request:
    """Check request ``params``; raises :class:`InvalidSetting` for a value of the wrong type or range."""
    values, stop = read_sampling(params, PARAMS)
    max_tokens = values.pop("max_tokens", None)
    seed = values.pop("seed", None)
    return Request(
        values=values,
        stop=stop,
        seed=seed if seed is not None else default_seed,
        max_tokens=max_tokens if max_tokens and max_tokens > 0 else None,
    )


def generation_config(base: Any, request: Request, *, max_new_tokens: int, pad_token_id: int | None) -> Any:
    """The model's ``GenerationConfig`` with the request applied (a copy: the model's stays as it was)."""
    from transformers import GenerationConfig

    config = copy.deepcopy(base) if base is not None else GenerationConfig()
    values = request.values
    if "temperature" in values:
        config.do_sample = values["temperature"] > 0
    if config.do_sample:
        for name, field in _SAMPLING.items():
            if name in values and not (name == "temperature" and values[name] <= 0):
                setattr(config, field, values[name])
    else:
        # Greedy: put the sampling knobs back to neutral so transformers does not warn about them.
        fresh = GenerationConfig()
        for field in _SAMPLING.values():
            setattr(config, field, getattr(fresh, field))
    if "repeat_penalty" in values:
        config.repetition_penalty = values["repeat_penalty"]
    config.max_new_tokens = max_new_tokens
    config.max_length = None
    if config.pad_token_id is None:
        config.pad_token_id = pad_token_id
    return config


def seeded(seed: int | None) -> None:
    """Reseed torch's generators (CPU and every GPU) when the request carries a seed."""
    if seed is not None:
        import torch

        torch.manual_seed(seed)


class StopText:
    """Cuts streamed text at the first stop string, holding back what could be the start of one."""

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = tuple(s for s in stops if s)
        self.pending = ""
        self.hit = False

    def feed(self, piece: str) -> str:
        """The part of ``piece`` (after what was held back) that is safe to show now."""
        if self.hit:
            return ""
        text = self.pending + piece
        cuts = [i for i in (text.find(s) for s in self.stops) if i >= 0]
        if cuts:
            self.hit, self.pending = True, ""
            return text[: min(cuts)]
        keep = 0
        for stop in self.stops:
            for n in range(min(len(stop) - 1, len(text)), keep, -1):
                if text.endswith(stop[:n]):
                    keep = n
                    break
        self.pending = text[len(text) - keep:] if keep else ""
        return text[: len(text) - keep]

    def flush(self) -> str:
        """What was held back, once the text has ended without a stop string."""
        rest, self.pending = ("" if self.hit else self.pending), ""
        return rest


@define
class Outcome:
    """What a finished generation produced, for the answer's ``finish_reason`` and token counts."""

    prompt_tokens: int
    completion_tokens: int = 0
    finish_reason: str = "stop"


def finish(outcome: Outcome, output: Any, *, eos_ids: frozenset[int], max_new_tokens: int, stopped: bool) -> None:
    """Fill ``outcome`` from ``generate``'s output ids (prompt included)."""
    new = output[0][outcome.prompt_tokens:]
    outcome.completion_tokens = int(new.shape[0])
    ended = outcome.completion_tokens > 0 and int(new[-1]) in eos_ids
    full = outcome.completion_tokens >= max_new_tokens
    outcome.finish_reason = "length" if full and not ended and not stopped else "stop"


@functools.cache
def _halt_class() -> type:
    import torch
    from transformers import StoppingCriteria

    class Halt(StoppingCriteria):
        """Ends generation once ``event`` is set: a stop string was seen, or the reader went away."""

        def __init__(self, event: threading.Event) -> None:
            self.event = event

        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)

    return Halt


def generate_text(lm: Any, tokenizer: Any, inputs: Mapping[str, Any], config: Any, request: Request,
                  outcome: Outcome, *, eos_ids: frozenset[int]) -> str:
    """The whole answer at once (stop strings cut it, as in a stream)."""
    import torch

    if request.stop:
        pieces = stream_text(lm, tokenizer, inputs, config, request, outcome, eos_ids=eos_ids)
        return "".join(getattr(p, "content", p) for p in pieces)
    seeded(request.seed)
    with torch.inference_mode():
        output = lm.generate(**inputs, generation_config=config, **_processors(request))
    finish(outcome, output, eos_ids=eos_ids, max_new_tokens=config.max_new_tokens, stopped=False)
    if request.logprobs is not None and outcome.completion_tokens:
        request.logprobs.take(int(output[0][-1]))  # the last step's token
    return tokenizer.decode(output[0][outcome.prompt_tokens:], skip_special_tokens=True)


def stream_text(lm: Any, tokenizer: Any, inputs: Mapping[str, Any], config: Any, request: Request,
                outcome: Outcome, *, eos_ids: frozenset[int]) -> Iterator[Any]:
    """Text pieces as they are generated (:class:`Delta` pieces carrying their tokens' log-probabilities
    when the request asks for them). Closing the iterator early stops the generation."""
    import torch
    from transformers import StoppingCriteriaList, TextIteratorStreamer

    recorder = request.logprobs
    if recorder is not None:
        streamer = recorder.streamer(tokenizer)
    else:
        streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    halt = threading.Event()
    result: dict[str, Any] = {}

    def work() -> None:
        try:
            seeded(request.seed)
            with torch.inference_mode():
                result["output"] = lm.generate(
                    **inputs, generation_config=config, streamer=streamer,
                    stopping_criteria=StoppingCriteriaList([_halt_class()(halt)]), **_processors(request),
                )  # fmt: skip
        except BaseException as exc:  # handed to the reader, who raises it in the caller's thread
            result["error"] = exc
            streamer.end()

    worker = threading.Thread(target=work, name="corral-transformers-generate", daemon=True)
    worker.start()
    stops = StopText(request.stop)
    try:
        for piece in streamer:
            piece, logprobs = piece if recorder is not None else (piece, ())
            if stops.hit:
                continue  # generation ends at its next step; the rest is past the stop string
            text = stops.feed(piece)
            if stops.hit:
                halt.set()
            if logprobs:
                yield Delta(content=text, logprobs=logprobs)
            elif text:
                yield text
        rest = stops.flush()
        if rest:
            yield rest
    finally:
        halt.set()
        worker.join()
    if "error" in result:
        error = result["error"]
        if isinstance(error, CorralError):
            raise error
        raise CorralError(f"generation failed: {type(error).__name__}: {error}") from error
    finish(outcome, result["output"], eos_ids=eos_ids, max_new_tokens=config.max_new_tokens, stopped=stops.hit)


def _processors(request: Request) -> dict[str, Any]:
    # The recorder comes first: it reads the model's scores before a grammar masks them.
    processors = ([request.logprobs.processor()] if request.logprobs is not None else []) + list(request.processors)
    if not processors:
        return {}
    from transformers import LogitsProcessorList

    return {"logits_processor": LogitsProcessorList(processors)}
