"""Name hints: what file and folder names suggest when the content alone cannot say.

Content decides the format and kind; names only ever raise a *hint* (lower confidence, and the reason
says "name hint"), because names lie: a folder called ``vision-experiments`` may hold a text model.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

#: Words in a file or folder name that suggest a multimodal (vision) model. A word must start at a
#: boundary, so "revision" is no hint while "Llama-3.2-11B-Vision-Instruct" is.
MULTIMODAL_WORDS = ("vision", "mmproj", "multimodal")
_MULTIMODAL_RE = re.compile(r"(?<![a-z0-9])(" + "|".join(MULTIMODAL_WORDS) + ")", re.IGNORECASE)

#: How llama.cpp, LM Studio and Hugging Face repos name projector files (``mmproj-model-f16.gguf``).
MMPROJ_WORD = "mmproj"
#: At most this many projector candidates are opened per model (each costs a header read).
MAX_MMPROJ_SIBLINGS = 8


def multimodal_name_hints(path: Path) -> list[str]:
    """Reasons, one per name, for the multimodal words in ``path``'s file name and its folder's name."""
    reasons = []
    for label, name in (("file", path.name), ("folder", path.parent.name)):
        m = _MULTIMODAL_RE.search(name)
        if m:
            reasons.append(f"name hint: {m.group(1).lower()!r} in the {label} name {name!r}")
    return reasons


def mmproj_siblings(path: Path) -> list[Path]:
    """GGUF files beside ``path`` whose names say they are projectors, sorted, at most a few.

    Only named candidates are opened: verifying every GGUF in a folder of hundreds would make each
    detection read every other file's header.
    """
    try:
        with os.scandir(path.parent) as entries:
            names = sorted(
                e.name
                for e in entries
                if e.name.lower().endswith(".gguf")
                and MMPROJ_WORD in e.name.lower()
                and e.name != path.name
                and not e.name.startswith(".")
                and e.is_file()
            )
    except OSError:
        return []
    return [path.parent / n for n in names[:MAX_MMPROJ_SIBLINGS]]
