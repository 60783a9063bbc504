"""Corral's own token loop over llama.cpp, for requests llama-cpp-python's ``create_completion`` serves
badly: grammar-constrained answers (JSON schema, forced tool calls), log-probabilities and tool-call
markup.

* **Grammar, checked lazily.** llama-cpp-python puts the grammar in the sampler chain, so every step
  tests every token of the vocabulary against it (262k for Gemma: under half the speed). llama.cpp's
  own server samples first and asks the grammar about that one token; only a refused token makes it
  apply the grammar to the whole vocabulary and sample again. This loop does the same.
* **Log-probabilities without ``logits_all``.** llama-cpp-python needs ``logits_all=True`` at load
  (a context × vocabulary buffer, 1 GB for Gemma at 1024 tokens); here each step's logits are read
  once, before the next token is evaluated.
* **Special tokens kept.** Pieces are detokenized with their special tokens, so tool-call markers
  (``[TOOL_CALLS]``, ``<|python_tag|>``) reach the parser; the turn-ending tokens are never shown.
"""

from __future__ import annotations

import codecs
import ctypes
import math
from typing import Any, Iterator, Mapping, Sequence

from attrs import define

from corral.api import CorralError, InvalidRequest, TokenLogprob

_TOKEN = None  # numpy dtype of llama_token_data, made on first use


@define
class Step:
    """One generated token's text (may be empty while UTF-8 bytes are incomplete) and its log-prob."""

    text: str
    logprob: TokenLogprob | None = None


@define
class Finish:
    """Why the loop ended and how many tokens it generated."""

    reason: str = "stop"
    tokens: int = 0


def _dtype():
    global _TOKEN
    if _TOKEN is None:
        import numpy as np

        _TOKEN = np.dtype([("id", np.intc), ("logit", np.single), ("p", np.single)], align=True)
    return _TOKEN


def compile_grammar(llm: Any, gbnf: str) -> Any:
    """A llama.cpp grammar sampler for GBNF text (freed by :func:`free_grammar`)."""
    import llama_cpp

    pointer = llama_cpp.llama_sampler_init_grammar(llm._model.vocab, gbnf.encode("utf-8"), b"root")
    if not pointer:
        raise InvalidRequest("llama.cpp could not compile the grammar made from this schema")
    return pointer


def free_grammar(pointer: Any) -> None:
    import llama_cpp

    if pointer:
        llama_cpp.llama_sampler_free(pointer)


class Decoder:
    """Generates from ``prompt`` token by token; iterate :meth:`steps`, then read :attr:`finish`."""

    def __init__(
        self,
        llm: Any,
        prompt: Sequence[int],
        args: Mapping[str, Any],
        *,
        grammar: str | None = None,
        top_logprobs: int | None = None,
        stop_ids: frozenset[int] = frozenset(),
    ) -> None:
        self.llm = llm
        self.prompt = list(prompt)
        self.args = dict(args)
        self.gbnf = grammar
        self.top_logprobs = top_logprobs
        self.stop_ids = stop_ids
        self.finish = Finish()

    def _chain(self) -> Any:
        a = self.args
        bias = a.get("logit_bias")
        processors = None
        if bias:
            import llama_cpp

            ids = list(bias)
            values = [float(bias[i]) for i in ids]

            def add_bias(_input_ids, scores):
                scores[ids] += values
                return scores

            processors = llama_cpp.LogitsProcessorList([add_bias])
        self.llm.set_seed(int(a["seed"]))
        return self.llm._init_sampler(
            top_k=a["top_k"], top_p=a["top_p"], min_p=a["min_p"], typical_p=a["typical_p"],
            temp=a["temperature"], repeat_penalty=a["repeat_penalty"], frequency_penalty=a["frequency_penalty"],
            presence_penalty=a["presence_penalty"], logits_processor=processors, grammar=None,
        )  # fmt: skip

    def _evaluate_prompt(self) -> None:
        llm = self.llm
        known = llm.input_ids[: llm.n_tokens].tolist() if llm.n_tokens else []
        same = 0
        for a, b in zip(known, self.prompt):
            if a != b:
                break
            same += 1
        same = min(same, len(self.prompt) - 1)  # evaluate at least one token to get its logits
        llm.n_tokens = same
        llm.eval(self.prompt[same:])

    def steps(self) -> Iterator[Step]:
        import llama_cpp
        import numpy as np

        llm = self.llm
        n_vocab = llm.n_vocab()
        vocab = llm._model.vocab
        limit = self.args.get("max_tokens")
        room = llm.n_ctx() - len(self.prompt)
        limit = min(limit, room) if limit else room
        chain = self._chain()
        grammar = compile_grammar(llm, self.gbnf) if self.gbnf else None
        candidates = np.empty(n_vocab, dtype=_dtype())
        self._ids = np.arange(n_vocab, dtype=np.intc)
        array = llama_cpp.llama_token_data_array(
            data=candidates.ctypes.data_as(ctypes.POINTER(llama_cpp.llama_token_data)),
            size=n_vocab, selected=-1, sorted=False,
        )  # fmt: skip
        one = llama_cpp.llama_token_data(0, 1.0, 0.0)
        single = llama_cpp.llama_token_data_array(data=ctypes.pointer(one), size=1, selected=-1, sorted=False)
        utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._evaluate_prompt()
        try:
            while self.finish.tokens < limit:
                logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1), shape=(n_vocab,))
                token = self._pick(chain.sampler, grammar, candidates, array, logits)
                if grammar is not None:
                    one.id, one.logit = token, 1.0
                    single.size, single.selected = 1, -1
                    llama_cpp.llama_sampler_apply(grammar, ctypes.byref(single))
                    if math.isinf(one.logit):  # refused: the grammar over the whole vocabulary, then sample again
                        token = self._pick(chain.sampler, grammar, candidates, array, logits, constrained=True)
                    llama_cpp.llama_sampler_accept(grammar, token)
                llama_cpp.llama_sampler_accept(chain.sampler, token)
                logprob = self._logprob(logits, token) if self.top_logprobs is not None else None
                self.finish.tokens += 1
                if llama_cpp.llama_vocab_is_eog(vocab, token) or token in self.stop_ids:
                    self.finish.reason = "stop"
                    tail = utf8.decode(b"", final=True)
                    if tail or logprob is not None:
                        yield Step(tail, logprob)
                    return
                piece = llm.detokenize([token], special=True)
                yield Step(utf8.decode(piece), logprob)
                if self.finish.tokens >= limit:
                    break
                llm.eval([token])
            self.finish.reason = "length"
            tail = utf8.decode(b"", final=True)
            if tail:
                yield Step(tail)
        except (ValueError, RuntimeError) as exc:
            raise CorralError(f"llama.cpp failed while generating: {exc}") from None
        finally:
            free_grammar(grammar)
            chain.close()

    def _pick(self, chain: Any, grammar: Any, candidates: Any, array: Any, logits: Any, *,
              constrained: bool = False) -> int:
        import llama_cpp

        candidates["id"] = self._ids  # samplers sort the array in place
        candidates["logit"] = logits
        array.size, array.selected, array.sorted = len(candidates), -1, False
        if constrained:
            llama_cpp.llama_sampler_apply(grammar, ctypes.byref(array))
        llama_cpp.llama_sampler_apply(chain, ctypes.byref(array))
        if array.selected < 0:
            raise CorralError("llama.cpp's sampler selected no token")
        return int(candidates["id"][array.selected])

    def _logprob(self, logits: Any, token: int) -> TokenLogprob:
        import numpy as np

        peak = float(logits.max())
        total = peak + math.log(float(np.exp(logits - peak).sum()))
        n = max(0, int(self.top_logprobs or 0))
        top: tuple[tuple[str, float], ...] = ()
        if n:
            best = np.argpartition(-logits, n - 1)[:n] if n < len(logits) else np.arange(len(logits))
            best = best[np.argsort(-logits[best])]
            top = tuple((self._text(int(i)), min(0.0, float(logits[i]) - total)) for i in best)
        text = self._text(token)
        return TokenLogprob(token=text, logprob=min(0.0, float(logits[token]) - total),
                            bytes=tuple(self.llm.detokenize([token], special=True)), top=top)

    def _text(self, token: int) -> str:
        return self.llm.detokenize([token], special=True).decode("utf-8", errors="replace")
