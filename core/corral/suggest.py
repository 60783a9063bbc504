""""Did you mean ...?": the closest names to one that was not found.

One matcher for every lookup that can miss (models, LoRAs, setting keys, choices, catalog entries), so
every command and HTTP route words its suggestion the same way. It imports nothing of Corral's but the
home directory, so the store and the settings can use it.
"""

from __future__ import annotations

import json
import re
from difflib import SequenceMatcher
from pathlib import Path
from typing import Iterable

from corral.home import corral_home

_SEPARATORS = re.compile(r"[\s_\-.:/]+")
_HEX = re.compile(r"^[0-9a-f]+$")


def _norm(text: str) -> str:
    return _SEPARATORS.sub("", text.lower())


def score(word: str, candidate: str) -> float:
    """How close ``candidate`` is to ``word``, 0 to 1: the better of the whole-name ratio and the ratio
    against the candidate's start (so ``gema3`` is close to ``gemma-3-270m-it`` and ``5c0f`` to an id
    ``5c0e0f3a9b21``), both with case and separators ignored."""
    w, c = _norm(word), _norm(candidate)
    if not w or not c:
        return 0.0
    best = SequenceMatcher(None, w, c).ratio()
    if len(w) >= 3:
        for extra in (0, 1, 2):
            best = max(best, SequenceMatcher(None, w, c[: len(w) + extra]).ratio())
        if w in c:
            best = max(best, 0.8)
    return best


def closest(word: str, candidates: Iterable[str], *, limit: int = 3, cutoff: float = 0.7) -> list[str]:
    """Up to ``limit`` of ``candidates`` closest to ``word``, best first (ties keep the given order)."""
    seen: dict[str, float] = {}
    for candidate in candidates:
        if candidate and candidate not in seen and candidate != word:
            seen[candidate] = score(word, candidate)
    ranked = sorted((c for c, s in seen.items() if s >= cutoff), key=lambda c: -seen[c])
    if ranked:  # only those about as close as the best: "float61" means float16, not bfloat16 too
        ranked = [c for c in ranked if seen[c] >= seen[ranked[0]] - 0.08]
    return ranked[:limit]


def closest_ids(word: str, ids: Iterable[str], *, limit: int = 3) -> list[str]:
    """Record ids that ``word`` (a mistyped id or id prefix of 4+ hex digits) is closest to."""
    w = word.lower()
    if len(w) < 4 or not _HEX.match(w):
        return []
    return closest(w, ids, limit=limit, cutoff=0.74)


def phrase(names: Iterable[str]) -> str:
    """``a``, ``a or b``, ``a, b or c``."""
    names = list(names)
    if len(names) <= 1:
        return "".join(names)
    return f"{', '.join(names[:-1])} or {names[-1]}"


def did_you_mean(word: str, candidates: Iterable[str], *, limit: int = 3) -> str:
    """``"did you mean X or Y?"`` for the closest candidates, or ``""`` when none is close."""
    found = closest(word, candidates, limit=limit)
    return f"did you mean {phrase(found)}?" if found else ""


def catalog_ids(home: Path | None = None) -> list[str]:
    """The ids of the built-in catalog and the user's ``CORRAL_HOME/catalog.json``, read cheaply (no
    parsing into entries, no plugin host): for suggestions only, so an unreadable file gives none."""
    ids: list[str] = []
    files = [Path(__file__).parent / "catalog" / "data" / "models.json", (home or corral_home()) / "catalog.json"]
    for path in files:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        items = data.get("models", []) if isinstance(data, dict) else data
        if isinstance(items, list):
            ids.extend(i["id"] for i in items if isinstance(i, dict) and isinstance(i.get("id"), str))
    return ids


def model_hint(ref: str, names: Iterable[str], ids: Iterable[str], home: Path | None = None) -> str:
    """The suggestion for a model reference the library lacks: close library names (or ids), then close
    catalog entries with the command that tells where to pull one; ``""`` when nothing is close."""
    names = list(names)
    known = catalog_ids(home)
    if ref.lower() in known:  # a catalog entry by its id: say how to get it
        return f"it is in the catalog: pull it and chat with `corral run {ref.lower()} --pull`"
    found = closest(ref, names) or closest_ids(ref, ids)
    catalog = [c for c in closest(ref, known) if c not in names]
    listed = f"the catalog has {phrase(catalog)} (see `corral catalog show {catalog[0]}`)" if catalog else ""
    if not found:
        return listed
    asked = f"did you mean {phrase(found)}?"
    return f"{asked} {listed[0].upper()}{listed[1:]}" if listed else asked
