"""Memory estimates for catalog entries, before anything is downloaded.

GGUF entries go through the same llama.cpp memory model as files on disk (:mod:`corral.estimate.llamacpp`),
with the weights estimated from the parameter count and the quantization's bits per weight
(:func:`corral.catalog.quants.gguf_weight_bytes`) unless the entry records the real file size. Other
formats: parameters × bits per value, through the torch estimate.
"""

from __future__ import annotations

from typing import Any, Mapping

from corral.catalog.quants import gguf_weight_bytes
from corral.estimate import llamacpp as lc
from corral.estimate.parts import Split
from corral.estimate.weights import estimate_torch
from corral.records import CatalogEntry, CatalogQuant, Format, MemoryEstimate

#: The context recommendations assume when none is given: a working size, not each model's maximum.
DEFAULT_CTX = 4096


def shape_of(entry: CatalogEntry) -> lc.LlamaShape:
    """The llama.cpp shape of a catalog entry (missing figures are derived the way configs do)."""
    layers = entry.layers or 0
    hidden = entry.hidden_size or 0
    heads = entry.heads or 1
    head_dim = entry.head_dim or (hidden // heads if heads else 0)
    width = (entry.kv_heads or heads) * head_dim
    swa = lc.swa_layers_for(entry.architecture, layers, entry.swa_pattern) if entry.sliding_window else ()
    return lc.LlamaShape(
        n_layer=layers,
        n_embd=hidden,
        n_head=heads,
        n_vocab=entry.vocab_size or 0,
        n_ctx_train=entry.context_length or DEFAULT_CTX,
        n_embd_k=[width] * layers,
        n_embd_v=[width] * layers,
        n_ff=entry.ffn_size or 4 * hidden,
        n_embd_q=head_dim * heads,
        swa_layers=swa,
        n_swa=(entry.sliding_window or 0) if swa else 0,
    )


def weight_bytes(entry: CatalogEntry, quant: CatalogQuant) -> int:
    """The download size when the entry records it, else parameters × bits (GGUF rules applied)."""
    if quant.size:
        return quant.size
    if entry.format == Format.GGUF:
        return gguf_weight_bytes(
            entry.parameters, quant.bits, quant.name,
            hidden=entry.hidden_size, vocab=entry.vocab_size, tied=entry.tied_embeddings,
        )  # fmt: skip
    return int(entry.parameters * quant.bits / 8)


def estimate_entry(
    entry: CatalogEntry, quant: CatalogQuant, settings: Mapping[str, Any] | None = None
) -> MemoryEstimate:
    """What loading ``entry`` in ``quant`` would take; ``settings`` as for a library model.

    ``n_ctx`` defaults to the model's context, at most :data:`DEFAULT_CTX` tokens.
    """
    settings = dict(settings or {})
    if not settings.get("n_ctx") and entry.context_length:
        settings["n_ctx"] = min(entry.context_length, DEFAULT_CTX)
    weights = weight_bytes(entry, quant)
    if entry.format != Format.GGUF:
        return estimate_torch(
            weights, entry.category, settings, hidden=entry.hidden_size or 0, layers=entry.layers or 0,
            heads=entry.heads or 0, kv_heads=entry.kv_heads, head_dim=entry.head_dim,
            vocab=entry.vocab_size or 0, context_length=entry.context_length,
        )  # fmt: skip
    shape = shape_of(entry)
    run = lc.LlamaRun.from_settings(shape, settings)
    split = Split()
    split.add("weights", weights)
    split.add("kv_cache", lc.kv_bytes(shape, run))
    split.add("compute", lc.compute_bytes(shape, run, device="cpu"))
    split.add("overhead", lc.runtime_bytes(shape))
    notes = [] if quant.size else [f"weights estimated from {entry.parameters:,} parameters at {quant.bits:g} bits"]
    return split.finish(run.n_ctx, notes)
