"""Sampling parameters of a request, normalised for llama-cpp-python.

Names and checks are the core's (:mod:`corral.sampling`; ``logit_bias`` maps token ids to biases);
parameters llama.cpp does not have are ignored, as the driver interface says. Every request gets an
explicit seed: llama-cpp-python would otherwise derive the same one for every call of a loaded model.
"""

from __future__ import annotations

import random
from typing import Any, Mapping

from corral.api import read_sampling

#: name -> (type, default). Defaults are llama.cpp's own (llama-server's), not llama-cpp-python's.
PARAMS: dict[str, tuple[type, Any]] = {
    "temperature": (float, 0.8),
    "top_p": (float, 0.95),
    "top_k": (int, 40),
    "min_p": (float, 0.05),
    "typical_p": (float, 1.0),
    "repeat_penalty": (float, 1.0),
    "presence_penalty": (float, 0.0),
    "frequency_penalty": (float, 0.0),
    "max_tokens": (int, None),
    "seed": (int, None),
}
#: What :func:`corral.sampling.read_sampling` checks: the parameters above, and ``logit_bias``.
_TYPES = {name: kind for name, (kind, _) in PARAMS.items()} | {"logit_bias": dict}


def sampling(params: Mapping[str, Any], *, default_seed: int | None = None) -> dict[str, Any]:
    """Keyword arguments for ``create_completion`` / ``create_chat_completion`` from request ``params``.

    ``max_tokens`` unset (or 0) means: until the model stops or the context is full. ``stop`` is a string or
    a list of strings. The seed is the request's, else the model's ``seed`` setting, else a fresh random one.
    """
    out: dict[str, Any] = {name: default for name, (_, default) in PARAMS.items()}
    given, stop = read_sampling(params, _TYPES)
    out.update(given)
    if out["max_tokens"] is not None and out["max_tokens"] <= 0:
        out["max_tokens"] = None
    if out["seed"] is None:
        out["seed"] = default_seed if default_seed is not None else random.getrandbits(31)
    out["stop"] = list(stop)
    return out
