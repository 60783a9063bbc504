"""OpenAI's ``presence_penalty``, ``frequency_penalty`` and ``logit_bias`` as one transformers logits
processor (transformers has only the multiplicative ``repetition_penalty``).

As OpenAI defines them: a token's logit loses ``frequency_penalty`` times the number of times the answer
has used it so far, plus ``presence_penalty`` once it has been used at all (the prompt is not counted);
``logit_bias`` adds its value to the logit of each token id it names.
"""

from __future__ import annotations

import functools
from typing import Any, Mapping

from corral.api import InvalidRequest


def processor(values: Mapping[str, Any], vocab_size: int) -> Any | None:
    """The processor for a request's ``values`` (None when they ask for none of the three)."""
    presence = float(values.get("presence_penalty") or 0.0)
    frequency = float(values.get("frequency_penalty") or 0.0)
    bias = dict(values.get("logit_bias") or {})
    outside = sorted(t for t in bias if not 0 <= t < vocab_size)
    if outside:
        raise InvalidRequest(f"logit_bias names token {outside[0]}, outside the vocabulary (0 to {vocab_size - 1})")
    if not (presence or frequency or bias):
        return None
    return _penalize_class()(presence, frequency, bias)


@functools.cache
def _penalize_class() -> type:
    import torch
    from transformers import LogitsProcessor

    class Penalize(LogitsProcessor):
        def __init__(self, presence: float, frequency: float, bias: dict[int, float]) -> None:
            self.presence, self.frequency, self.bias = presence, frequency, bias
            self.start: int | None = None

        def __call__(self, input_ids: Any, scores: Any) -> Any:
            if self.start is None:
                self.start = int(input_ids.shape[1])
            scores = scores.clone()
            made = input_ids[:, self.start:]
            if made.shape[1] and (self.presence or self.frequency):
                counts = torch.zeros_like(scores).scatter_add_(1, made, torch.ones_like(made, dtype=scores.dtype))
                scores -= counts * self.frequency + (counts > 0).to(scores.dtype) * self.presence
            for token, value in self.bias.items():
                if token < scores.shape[-1]:
                    scores[:, token] += value
            return scores

    return Penalize
