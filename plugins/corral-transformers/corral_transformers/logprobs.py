"""Per-token log-probabilities for transformers (OpenAI's ``logprobs`` / ``top_logprobs``).

A logits processor placed before the grammar's mask (and before temperature and top-k, which
transformers applies after every custom processor) keeps the log-softmax of the model's scores at each
step; the token the step chose is read once it is known: by the streamer as it receives it, else from
the next step's input, else from the finished output. Only the latest step's row is held.
"""

from __future__ import annotations

import functools
from typing import Any

from corral.api import TokenLogprob


class Recorder:
    """The log-probabilities of one generation: ``items`` in the order the tokens were made."""

    def __init__(self, tokenizer: Any, top: int) -> None:
        self.tokenizer = tokenizer
        self.top = max(0, int(top))
        self.items: list[TokenLogprob] = []
        self._row: Any = None

    def _text(self, token: int) -> str:
        return self.tokenizer.decode([token], skip_special_tokens=False)

    def record(self, scores: Any) -> None:
        """A step's scores (batch of one), before the chosen token is known."""
        import torch

        self._row = torch.log_softmax(scores[0].float(), dim=-1).cpu()

    def take(self, token: int) -> TokenLogprob | None:
        """The chosen ``token`` of the step last recorded (None when that step was taken already)."""
        import torch

        row, self._row = self._row, None
        if row is None:
            return None
        top: tuple[tuple[str, float], ...] = ()
        if self.top:
            values, ids = torch.topk(row, min(self.top, row.shape[0]))
            top = tuple((self._text(int(i)), min(0.0, float(v))) for v, i in zip(values, ids))
        text = self._text(token)
        item = TokenLogprob(token=text, logprob=min(0.0, float(row[token])), bytes=tuple(text.encode("utf-8")),
                            top=top)
        self.items.append(item)
        return item

    def processor(self) -> Any:
        return _processor_class()(self)

    def streamer(self, tokenizer: Any) -> Any:
        return _streamer_class()(tokenizer, self)


@functools.cache
def _processor_class() -> type:
    from transformers import LogitsProcessor

    class Record(LogitsProcessor):
        """Leaves the scores as they are; the previous step's token is the last input id."""

        def __init__(self, recorder: Recorder) -> None:
            self.recorder = recorder
            self.start: int | None = None

        def __call__(self, input_ids: Any, scores: Any) -> Any:
            if self.start is None:
                self.start = int(input_ids.shape[1])
            elif input_ids.shape[1] > self.start:
                self.recorder.take(int(input_ids[0, -1]))
            self.recorder.record(scores)
            return scores

    return Record


@functools.cache
def _streamer_class() -> type:
    from transformers import TextIteratorStreamer

    class LogprobStreamer(TextIteratorStreamer):
        """Yields ``(text, log-probabilities of the tokens received since the last piece)``."""

        def __init__(self, tokenizer: Any, recorder: Recorder) -> None:
            super().__init__(tokenizer, skip_prompt=True, skip_special_tokens=True)
            self.recorder = recorder
            self.pending: list[TokenLogprob] = []

        def put(self, value: Any) -> None:
            if not self.next_tokens_are_prompt:
                for token in (value[0] if len(value.shape) > 1 else value).tolist():
                    item = self.recorder.take(int(token))
                    if item is not None:
                        self.pending.append(item)
            super().put(value)

        def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
            pending, self.pending = tuple(self.pending), []
            self.text_queue.put((text, pending), timeout=self.timeout)
            if stream_end:
                self.text_queue.put(self.stop_signal, timeout=self.timeout)

    return LogprobStreamer
