"""What ``corral create`` does, for its command and its HTTP routes alike: the preview of a model's shape
(parameters, memory) and the checked write that adds it to the library.

Only the preview's pure arithmetic (``spec``) is imported at the top: a preview needs neither torch nor
transformers; the write imports them through the exporter.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

import attrs

from corral.api import Conflict, InvalidSetting, PluginMissing, human_count, human_size
from corral_transformers import spec as specs

EXPORTER = "hf-causal-lm"
#: Room for tokenizer and config files on top of the weights when checking disk space.
SMALL_FILES = 32 * 1024 * 1024
#: The shape fields a preset fixes and an option overrides (``None``: not given).
SHAPE_FIELDS = ("vocab_size", "hidden_size", "layers", "heads", "kv_heads", "ffn_size", "context_length",
                "tie_embeddings")


@attrs.frozen
class Plan:
    """A checked shape with everything the preview shows (``data``: the ``--dry-run --json`` document)."""

    spec: specs.ModelSpec
    tokenizer: str  # "default" or a tokenizer directory, as the exporter takes it
    data: dict[str, Any]


def tokenizer_choice(tokenizer: str, vocab_size: int | None) -> tuple[str, int | None, str]:
    """(tokenizer option for the exporter, vocab size to use, description) for ``--tokenizer``."""
    if tokenizer == "default":
        return "default", vocab_size, ""
    from corral_transformers.hf_tokenizer import load_tokenizer

    directory = Path(tokenizer).expanduser().absolute()
    tokens = len(load_tokenizer(directory))
    low = specs.LIMITS["vocab_size"][0]
    if vocab_size is None and tokens < low:
        raise InvalidSetting(
            f"the tokenizer in {directory} has {tokens:,} tokens, fewer than a model vocabulary's minimum of "
            f"{low:,}; pass --vocab-size {low} to leave spare embedding rows, or train a larger tokenizer"
        )
    if vocab_size is not None and vocab_size < tokens:
        raise InvalidSetting(
            f"--vocab-size {vocab_size:,} is smaller than the tokenizer in {directory} ({tokens:,} tokens); "
            "leave --vocab-size out to use the tokenizer's size"
        )
    return str(directory), vocab_size or tokens, f"{directory} ({tokens:,} tokens)"


def available_memory() -> int:
    import psutil

    return int(psutil.virtual_memory().available)


def plan(preset: str, shape: Mapping[str, Any], *, out: Path, tokenizer: str = "default", dtype: str = "float32",
         seed: int = 0, available: int | None = None) -> Plan:
    """Resolve ``preset`` with the ``shape`` options given, check it, and preview it (nothing is written).

    Raises :class:`InvalidSetting` with the one-line message of the first rule it breaks.
    """
    from corral_transformers import default_tokenizer

    if dtype not in specs.BYTES_PER_PARAMETER:
        raise InvalidSetting(f"dtype {dtype!r} is not one of {', '.join(sorted(specs.BYTES_PER_PARAMETER))} (--dtype)")
    unknown = sorted(set(shape) - set(SHAPE_FIELDS))
    if unknown:
        raise InvalidSetting(f"unknown shape option {unknown[0]!r}; the options are {', '.join(SHAPE_FIELDS)}")
    choice, vocab_size, described = tokenizer_choice(tokenizer, shape.get("vocab_size"))
    spec = specs.validate(specs.resolve(preset, {**shape, "vocab_size": vocab_size}))
    available = available_memory() if available is None else available
    data = {"preset": preset, **specs.preview(spec, dtype=dtype, available=available),
            "tokenizer": described or default_tokenizer.describe(spec.vocab_size),
            "out": str(Path(out).expanduser().absolute()), "seed": seed}
    return Plan(spec=spec, tokenizer=choice, data=data)


def preview_rows(data: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The preview as (label, value) lines: what ``corral create`` prints and the web UI shows."""
    mem = data["memory"]
    return [
        ("architecture", f"{data['architecture']} (preset {data['preset']})"),
        ("vocabulary", f"{data['vocab_size']:,} tokens; tokenizer: {data['tokenizer']}"),
        ("hidden size", f"{data['hidden_size']:,}"),
        ("layers", f"{data['layers']}"),
        ("attention heads", f"{data['heads']} (KV heads {data['kv_heads']}, head size {data['head_dim']})"),
        ("FFN size", f"{data['ffn_size']:,}"),
        ("context length", f"{data['context_length']:,} tokens"),
        ("tied embeddings", "yes" if data["tie_embeddings"] else "no"),
        ("parameters", f"{data['parameters']:,} ({human_count(data['parameters'])})"),
        ("weights fp32", human_size(mem["weights_fp32"])),
        ("weights bf16", human_size(mem["weights_bf16"])),
        ("training", f"{human_size(mem['training'])} (Adam, mixed precision: 16 bytes per parameter; "
                     "activations extra)"),
        ("build memory", f"{human_size(mem['build'])} needed here, {human_size(mem['available'])} available"
                         + ("" if mem["fits"] else " (does not fit)")),
        ("writes", f"{data['out']}/model.safetensors, {human_size(data['file_size'])} ({data['dtype']})"),
    ]


def create(library: Any, plan: Plan, *, force: bool = False, progress: Any = None,
           announce: Callable[[], None] | None = None) -> tuple[Path, Any]:
    """Write the model ``plan`` previews and add it to ``library``: (its directory, its library record).

    Checks first that the build fits in memory, that the output directory may be written (empty, unless
    ``force``) and has room, that it is not a loaded library model, and that the exporter's libraries are
    installed; ``announce()`` runs once they all pass, before anything is written.
    """
    from corral_transformers.outdir import check_output_dir

    data = plan.data
    specs.check_memory(plan.spec, data["memory"]["available"])
    out = check_output_dir(Path(data["out"]), force=force, need_bytes=data["file_size"] + SMALL_FILES)
    existing = library.store.find_model_by_path(out.resolve())
    if existing is not None and existing.id in library.store.loaded_ids():
        raise Conflict(f"{out} is the library model {existing.name!r}, which is loaded; unload it first")
    exporter = library.host.exporter(EXPORTER)
    if exporter is None:
        raise PluginMissing(f"the {EXPORTER} exporter is not registered; reinstall corral-transformers",
                            distribution="corral-transformers")
    status = exporter.check()
    if not status.available:
        raise PluginMissing(f"corral create cannot run: {status.problem}; fix: {status.install}",
                            distribution=exporter.distribution)
    if announce is not None:
        announce()
    exporter().export(out, {"spec": plan.spec, "tokenizer": plan.tokenizer, "seed": data["seed"],
                            "dtype": data["dtype"]}, progress)
    name = None
    if existing is not None:  # --force over a library model: the record follows the new files
        library.remove(existing.id)
        name = existing.name
    description = f"untrained {specs.ARCHITECTURE} from corral create (preset {data['preset']}, seed {data['seed']})"
    return out, library.import_path(out, name=name, description=description).model
