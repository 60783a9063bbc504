"""``corral recommend``: the catalog models that fit a memory budget, best first.

Each entry is estimated in each of its quantizations (:func:`corral.catalog.estimate.estimate_entry`);
those over the budget drop out. Then one variant per model is kept and the models are ordered:

* ``quality``: the largest model first; per model, the most precise quantization that fits, up to 8.5
  bits per weight (beyond Q8_0 a quantization costs memory without a visible gain);
* ``size``: the smallest footprint first; per model, its first listed (default) quantization when it
  fits, else its smallest.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from attrs import frozen

from corral.catalog.estimate import estimate_entry
from corral.errors import InvalidSetting
from corral.records import CatalogEntry, CatalogQuant, MemoryEstimate

PREFERENCES = ("quality", "size")
#: Precision past which a quantization is not preferred for quality (Q8_0).
QUALITY_CAP_BITS = 8.5


@frozen
class Recommendation:
    entry: CatalogEntry
    quant: CatalogQuant
    estimate: MemoryEstimate


def candidates(
    entries: Iterable[CatalogEntry], budget: int, settings: Mapping[str, Any] | None = None
) -> dict[str, list[Recommendation]]:
    """Every (entry, quantization) that fits ``budget`` bytes, grouped by entry id."""
    fitting: dict[str, list[Recommendation]] = {}
    for entry in entries:
        for quant in entry.quantizations:
            estimate = estimate_entry(entry, quant, settings)
            if estimate.total_bytes <= budget:
                fitting.setdefault(entry.id, []).append(Recommendation(entry, quant, estimate))
    return fitting


def _pick(options: list[Recommendation], prefer: str) -> Recommendation:
    if prefer == "quality":
        capped = [o for o in options if o.quant.bits <= QUALITY_CAP_BITS] or options
        return max(capped, key=lambda o: o.quant.bits)
    default = options[0].entry.quantizations[0]
    return next((o for o in options if o.quant == default), min(options, key=lambda o: o.estimate.total_bytes))


def recommend(
    entries: Iterable[CatalogEntry],
    budget: int,
    *,
    prefer: str = "quality",
    limit: int = 5,
    settings: Mapping[str, Any] | None = None,
) -> list[Recommendation]:
    """The top ``limit`` models that fit ``budget`` bytes, ordered by ``prefer`` (quality or size)."""
    if prefer not in PREFERENCES:
        raise InvalidSetting(f"--prefer must be one of {', '.join(PREFERENCES)}, not {prefer!r}")
    picks = [_pick(options, prefer) for options in candidates(entries, budget, settings).values()]
    if prefer == "quality":
        picks.sort(key=lambda r: (-r.entry.parameters, -r.quant.bits, r.entry.id))
    else:
        picks.sort(key=lambda r: (r.estimate.total_bytes, r.entry.id))
    return picks[:limit]
