"""Structured output for transformers through llguidance: a JSON schema compiled against the model's
own tokenizer and enforced token by token as a logits processor.

llguidance was picked over xgrammar and outlines-core: it installs as a wheel on this CPU / Python 3.11
beside the transformers in the venv (no CUDA or torch build requirement), reads a Hugging Face
tokenizer directly, computes each step's mask in microseconds, and names the JSON-schema keywords it
does not implement (``Unimplemented keys: ["not"]``), which becomes the 400 the request gets.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

from corral.api import InvalidRequest, PluginMissing

ENGINE = "llguidance"


def _llguidance() -> Any:
    try:
        import llguidance
        import llguidance.hf  # noqa: F401
        import llguidance.torch  # noqa: F401
    except ImportError:
        raise PluginMissing("structured output with transformers needs llguidance: pip install llguidance",
                            distribution="llguidance") from None
    return llguidance


def compile_schema(schema: Mapping[str, Any]) -> str:
    """The llguidance grammar of ``schema``; what the engine cannot enforce is a 400 naming it."""
    llguidance = _llguidance()
    grammar = llguidance.LLMatcher.grammar_from_json_schema(json.dumps(schema), defaults={"whitespace_flexible": False})
    failed, messages = llguidance.LLMatcher.validate_grammar_with_warnings(grammar)
    if failed or messages:
        why = "; ".join(messages) or "the schema does not compile"
        raise InvalidRequest(f"{ENGINE} cannot enforce this JSON schema: {why}")
    return grammar


def logits_processor(tokenizer: Any, grammar: str, vocab_size: int) -> Any:
    """A transformers LogitsProcessor that masks every token the grammar does not allow next."""
    import torch
    from transformers import LogitsProcessor

    llguidance = _llguidance()
    lltok = llguidance.hf.from_tokenizer(tokenizer)
    matcher = llguidance.LLMatcher(lltok, grammar)
    bitmask = llguidance.torch.allocate_token_bitmask(1, lltok.vocab_size)

    class Constrain(LogitsProcessor):
        def __init__(self) -> None:
            self.start: int | None = None

        def __call__(self, input_ids: Any, scores: Any) -> Any:
            if self.start is None:
                self.start = int(input_ids.shape[1])
            elif input_ids.shape[1] > self.start:
                matcher.consume_token(int(input_ids[0, -1]))
            llguidance.torch.fill_next_token_bitmask(matcher, bitmask, 0)
            allowed = torch.zeros(scores.shape[-1], dtype=torch.bool)
            bits = bitmask[0].view(torch.uint8) if hasattr(bitmask[0], "view") else bitmask[0]
            unpacked = ((bits.unsqueeze(-1) >> torch.arange(8, dtype=torch.uint8)) & 1).flatten().bool()
            n = min(len(unpacked), scores.shape[-1], lltok.vocab_size)
            allowed[:n] = unpacked[:n]
            return scores.masked_fill(~allowed.to(scores.device), float("-inf"))

    return Constrain()
