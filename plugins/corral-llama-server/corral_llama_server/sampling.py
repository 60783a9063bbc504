"""Sampling parameters of a request, as llama-server's request body takes them.

Names and checks are the core's (:mod:`corral.sampling`), the same as corral-llamacpp's; parameters
llama.cpp does not have are ignored, as the driver interface says. Defaults are llama.cpp's own.
"""

from __future__ import annotations

from typing import Any, Mapping

from corral.api import read_sampling

#: name -> type of the parameters passed on (llama-server reads them under the same names).
PARAMS: dict[str, type] = {
    "temperature": float,
    "top_p": float,
    "top_k": int,
    "min_p": float,
    "typical_p": float,
    "repeat_penalty": float,
    "presence_penalty": float,
    "frequency_penalty": float,
    "max_tokens": int,
    "seed": int,
    "logit_bias": dict,
}

#: llama.cpp's sampler chain for ``temperature=0`` (its ``samplers`` request field).
GREEDY = ("penalties", "temperature")


def request_body(params: Mapping[str, Any], *, default_seed: int | None, cache_prompt: bool) -> dict[str, Any]:
    """The sampling part of a llama-server request body from request ``params``.

    ``max_tokens`` unset (or 0) means: until the model stops or the slot's context is full. A seeded
    request (its own seed or the model's ``seed`` setting) evaluates its prompt afresh, as with
    corral-llamacpp: a prompt partly served from the cache is evaluated in other batches, which moves the
    logits by rounding noise and so, at a near tie, the answer.
    """
    given, stop = read_sampling(params, PARAMS)
    body: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    if body.get("max_tokens") is not None and body["max_tokens"] <= 0:
        del body["max_tokens"]
    if "seed" not in body and default_seed is not None:
        body["seed"] = default_seed
    if "logit_bias" in body:
        body["logit_bias"] = [[int(token), float(bias)] for token, bias in body["logit_bias"].items()]
    if stop:
        body["stop"] = list(stop)
    body["cache_prompt"] = cache_prompt and "seed" not in body
    if body.get("temperature") == 0:
        # Greedy: the penalties, then the most likely token. llama.cpp's default chain would first sort
        # the top 40 of the whole vocabulary (262k entries for Gemma) for every token of every slot;
        # they always keep the most likely token, so the answer is the same. corral-llamacpp's chain at
        # temperature 0 is the same two steps.
        body["samplers"] = list(GREEDY)
    return body
