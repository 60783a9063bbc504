"""GGUF repositories: files grouped by quantization, split files as one variant, mmproj files marked; and
which files a pull takes (chosen files, one quantization, or the whole repository).
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Iterable, Sequence

from attrs import frozen

from corral.detect.gguf import split_info
from corral.errors import CorralError, NotFound
from corral.records import RemoteFile, Snapshot

#: Quantization names as llama.cpp and the big GGUF publishers write them in file names
#: (Q4_K_M, Q8_0, IQ2_XXS, Q4_0_4_4, UD-Q4_K_XL, TQ1_0, MXFP4, BF16, F16, F32).
QUANT_RE = re.compile(
    r"(?<![A-Za-z0-9])((?:UD-)?(?:I?Q[1-8](?:_[A-Z0-9]{1,3})*|TQ[12]_0|MXFP4(?:_MOE)?|BF16|FP16|F16|FP32|F32))"
    r"(?![A-Za-z0-9])",
    re.IGNORECASE,
)
MMPROJ_WORD = "mmproj"
#: Which projector a multimodal pull brings when a repository offers several (llama.cpp's advice).
MMPROJ_PREFERENCE = ("F16", "BF16", "Q8_0", "F32")


@frozen
class Variant:
    """One downloadable GGUF: a quantization (all parts of a split file), or a multimodal projector."""

    quant: str
    files: tuple[str, ...]
    size: int | None = None
    split: bool = False
    mmproj: bool = False


def is_gguf(name: str) -> bool:
    return name.lower().endswith(".gguf")


def is_mmproj(name: str) -> bool:
    return is_gguf(name) and MMPROJ_WORD in PurePosixPath(name).name.lower()


def quant_of(name: str) -> str | None:
    """The quantization a GGUF file name states (upper case), looking at the file, then its folders."""
    path = PurePosixPath(name)
    split = split_info(path)  # type: ignore[arg-type]
    stem = split[0] if split else path.name[: -len(".gguf")] if is_gguf(name) else path.stem
    for text in (stem, *(p.name for p in path.parents if p.name)):
        found = QUANT_RE.findall(text)
        if found:
            quant = found[-1].upper()
            return {"FP16": "F16", "FP32": "F32"}.get(quant, quant)
    return None


def _total(files: Sequence[RemoteFile]) -> int | None:
    sizes = [f.size for f in files]
    return None if any(s is None for s in sizes) else sum(sizes)  # type: ignore[arg-type]


def gguf_variants(files: Iterable[RemoteFile]) -> list[Variant]:
    """The GGUF variants of a file list, smallest first; projectors come last, marked ``mmproj``."""
    groups: dict[tuple[bool, str], list[RemoteFile]] = {}
    for f in files:
        if not is_gguf(f.name):
            continue
        mmproj = is_mmproj(f.name)
        split = split_info(PurePosixPath(f.name))  # type: ignore[arg-type]
        label = quant_of(f.name) or (split[0] if split else PurePosixPath(f.name).stem)
        groups.setdefault((mmproj, label), []).append(f)
    variants = []
    for (mmproj, label), members in groups.items():
        members.sort(key=lambda f: f.name)
        split = any(split_info(PurePosixPath(f.name)) for f in members)  # type: ignore[arg-type]
        variants.append(Variant(label, tuple(f.name for f in members), _total(members), split, mmproj))
    return sorted(variants, key=lambda v: (v.mmproj, v.size if v.size is not None else 1 << 62, v.quant))


def preferred_mmproj(variants: Sequence[Variant]) -> Variant | None:
    """The projector a multimodal pull takes: F16 first, then BF16, Q8_0, F32, then the smallest."""
    projectors = [v for v in variants if v.mmproj]
    for quant in MMPROJ_PREFERENCE:
        for v in projectors:
            if v.quant == quant:
                return v
    return projectors[0] if projectors else None


def select_files(
    snapshot: Snapshot,
    *,
    names: Sequence[str] = (),
    quant: str | None = None,
    everything: bool = False,
    mmproj: bool = True,
) -> list[RemoteFile]:
    """The files a pull takes, in the repository's order.

    ``names`` and ``quant`` choose files (both may be given); with neither, the whole repository is
    taken, unless it holds several GGUF quantizations and ``everything`` is not set (then the user must
    choose). When GGUF model files are taken without a projector and the repository has one, the
    preferred projector comes along (``mmproj=False`` leaves it out).
    """
    where = f"{snapshot.repo} ({snapshot.source})"
    by_name = {f.name: f for f in snapshot.files}
    variants = gguf_variants(snapshot.files)
    models = [v for v in variants if not v.mmproj]
    chosen: set[str] = set()
    for name in names:
        if name not in by_name:
            raise NotFound(f"{where} has no file {name!r}; see `corral files {snapshot.repo}`")
        chosen.add(name)
    if quant:
        wanted = [v for v in models if v.quant.upper() == quant.upper()]
        if not wanted:
            offered = ", ".join(v.quant for v in models) or "none"
            raise NotFound(f"{where} has no {quant} GGUF; its quantizations: {offered}")
        for v in wanted:
            chosen.update(v.files)
    if not names and not quant:
        if len(models) > 1 and not everything:
            offered = ", ".join(v.quant for v in models)
            raise CorralError(
                f"{where} holds {len(models)} GGUF quantizations ({offered}); choose one with --quant, "
                f"or take every file with --all"
            )
        chosen.update(by_name)
    takes_model = any(is_gguf(n) and not is_mmproj(n) for n in chosen)
    if mmproj and takes_model and not any(is_mmproj(n) for n in chosen):
        projector = preferred_mmproj(variants)
        if projector is not None:
            chosen.update(projector.files)
    return [f for f in snapshot.files if f.name in chosen]


def listing(snapshot: Snapshot) -> dict:
    """``corral files --json`` (and ``GET /corral/hub/files``): the snapshot, each file with its
    quantization, projector mark and unsafe-name reason, and the GGUF variants."""
    from corral.convert import to_data
    from corral.pull.names import unsafe_reason

    files = [{**to_data(f), "quant": quant_of(f.name) if is_gguf(f.name) else None, "mmproj": is_mmproj(f.name),
              "unsafe": unsafe_reason(f.name)} for f in snapshot.files]
    return {**to_data(snapshot), "files": files, "variants": to_data(gguf_variants(snapshot.files))}

