"""The core's LoRA check: does an adapter fit its base model? Architecture first, then tensor shapes.

The shape rules are the ones the loaders enforce, so a mismatch is reported at ``corral lora add``
instead of as a crash at load time:

* GGUF (llama.cpp): every ``X.lora_a``/``X.lora_b`` pair needs a base tensor ``X``; in GGUF order
  (``ne[0]`` = inputs) ``lora_a.ne[0] == X.ne[0]`` and ``lora_b.ne[1] == X.ne[1]``.
* PEFT safetensors (transformers): ``...q_proj.lora_A.weight`` (rank, in) and ``lora_B`` (out, rank)
  against the base's ``...q_proj.weight`` (out, in).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable

from corral.errors import Incompatible
from corral.records import Category, Detection, Format, Model

#: How many mismatching tensors a message lists before it says "and N more".
_SHOWN = 3
_ARCH_SUFFIXES = re.compile(r"(forcausallm|forconditionalgeneration|lmheadmodel|model|text)$")


def _norm_arch(name: str) -> str:
    return _ARCH_SUFFIXES.sub("", re.sub(r"[^a-z0-9]", "", name.lower()))


def _same_arch(a: str, b: str) -> bool:
    # GGUF says "llama", transformers "LlamaForCausalLM" or "llama", Gemma 3 text "gemma3_text": compare
    # the normalised names and accept one being a prefix of the other rather than reject a good pair.
    x, y = _norm_arch(a), _norm_arch(b)
    return x.startswith(y) or y.startswith(x)


def check_lora_fits(base: Model, lora: Detection) -> None:
    """Raise :class:`Incompatible`, naming both files and the mismatch, when ``lora`` cannot apply to ``base``.

    Checks the architecture, then the loader (a GGUF adapter needs a GGUF base and the reverse), then
    tensor shapes where both sides' headers say them. Returns None when nothing contradicts the pair.
    """
    lname, bname = lora.path.name, base.path.name
    la, ba = lora.facts.architecture, base.facts.architecture
    if la and ba and not _same_arch(la, ba):
        raise Incompatible(f"LoRA {lname} is for {la}, base {bname} is {ba}")
    # An adapter that names no architecture (PEFT records only a base repo name) still says, through
    # its tensor names, whether it adapts an image model or a language model: never cross the two.
    lc, bc = lora.category, base.category
    if lc and bc and (lc == Category.IMAGE) != (bc == Category.IMAGE):
        raise Incompatible(f"LoRA {lname} adapts {lc} models; base {bname} is in category {bc}")
    if (lora.format == Format.GGUF) != (base.format == Format.GGUF):
        if lora.format == Format.GGUF:
            raise Incompatible(
                f"LoRA {lname} is a GGUF adapter, which only llama.cpp applies to a GGUF model; "
                f"base {bname} is {base.format}"
            )
        raise Incompatible(
            f"LoRA {lname} is {lora.format}, but base {bname} is a GGUF model: llama.cpp needs a GGUF adapter "
            "(convert it with llama.cpp's convert_lora_to_gguf.py)"
        )
    if lora.format == Format.GGUF:
        problems = _gguf_mismatches(base, lora)
    else:
        problems = _peft_mismatches(base, lora)
    if problems:
        more = f"; and {len(problems) - _SHOWN} more" if len(problems) > _SHOWN else ""
        raise Incompatible(
            f"LoRA {lname} does not fit base {bname}: " + "; ".join(problems[:_SHOWN]) + more
        )


def _gguf_mismatches(base: Model, lora: Detection) -> list[str]:
    from corral.detect.gguf import read_gguf_header

    shapes: dict[str, tuple[int, ...]] = {}
    for part in base.paths or (base.path,):
        shapes.update((t.name, t.shape) for t in read_gguf_header(part).tensors)
    adapter = {t.name: t.shape for t in read_gguf_header(lora.path).tensors}
    problems = []
    for name, a_shape in adapter.items():
        if not name.endswith(".lora_a"):
            continue
        target = name[: -len(".lora_a")]
        b_shape = adapter.get(target + ".lora_b")
        have = shapes.get(target)
        if have is None:
            problems.append(f"{target}: the LoRA adapts a tensor the base does not have")
            continue
        if a_shape[0] != have[0]:
            problems.append(f"{target}: LoRA expects {a_shape[0]} inputs, base has {have[0]}")
        elif b_shape is not None and len(b_shape) > 1 and len(have) > 1 and b_shape[1] != have[1]:
            problems.append(f"{target}: LoRA produces {b_shape[1]} outputs, base has {have[1]}")
    return problems


def _safetensors_files(path: Path, paths: Iterable[Path] = ()) -> list[Path]:
    listed = [p for p in paths if p.suffix == ".safetensors"]
    if listed:
        return listed
    if path.is_dir():
        return sorted(path.glob("*.safetensors"))
    return [path] if path.suffix == ".safetensors" else []


def _peft_key(name: str) -> tuple[str, str] | None:
    """``(base tensor name, "A" or "B")`` for a PEFT LoRA tensor, else None."""
    m = re.match(r"^(?:base_model\.model\.)?(.+)\.lora_([AB])(?:\.[^.]+)?\.weight$", name)
    return (m[1] + ".weight", m[2]) if m else None


def _peft_mismatches(base: Model, lora: Detection) -> list[str]:
    try:
        from corral.detect.safetensors import shapes_of
    except ImportError:
        return []
    lora_shapes: dict[str, tuple[int, ...]] = {}
    for f in _safetensors_files(lora.path, lora.paths):
        lora_shapes.update(shapes_of(f) or {})
    base_shapes: dict[str, tuple[int, ...]] = {}
    for f in _safetensors_files(base.path, base.paths):
        base_shapes.update(shapes_of(f) or {})
    if not lora_shapes or not base_shapes:
        return []  # a pickle or ONNX side: headers do not give shapes cheaply, architecture was checked
    problems, matched = [], 0
    for name, shape in lora_shapes.items():
        key = _peft_key(name)
        if key is None:
            continue  # kohya names (lora_unet_..._lora_down) do not map back to diffusers keys reliably
        target, side = key
        have = base_shapes.get(target)
        if have is None:
            # Transformers checkpoints sometimes drop the "model." prefix that PEFT keeps, or the reverse.
            have = base_shapes.get(target.removeprefix("model.")) or base_shapes.get("model." + target)
        if have is None or len(shape) < 2 or len(have) < 2:
            continue
        matched += 1
        if side == "A" and shape[1] != have[1]:
            problems.append(f"{target}: LoRA expects {shape[1]} inputs, base has {have[1]}")
        elif side == "B" and shape[0] != have[0]:
            problems.append(f"{target}: LoRA produces {shape[0]} outputs, base has {have[0]}")
    # No key matched at all: the naming differs more than we know how to map, so the architecture
    # check above is all we can say; refusing here could reject a good adapter.
    return problems if matched else []
