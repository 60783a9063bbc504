"""Where a record's files are: a Hugging Face model folder, a lone weight file beside its ``config.json``,
or the model's snapshot in the Hugging Face cache when the recorded path is gone.

Everything is local: the cache is read with ``local_files_only``, so a load never reaches the network.
"""

from __future__ import annotations

from pathlib import Path

from attrs import frozen

from corral.errors import DetectionError, NotFound
from corral.records import Format, Model, Provenance

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")


@frozen
class Source:
    """A model's folder (config.json, tokenizer) and, for a lone weight file, that file."""

    folder: Path
    weights: Path | None = None


def cached_snapshot(provenance: Provenance) -> Path | None:
    """The Hugging Face cache snapshot of ``provenance``'s repository, if it is there (no network)."""
    if provenance.hub not in (None, "huggingface") or not provenance.repo:
        return None
    try:
        from huggingface_hub import snapshot_download

        path = snapshot_download(provenance.repo, revision=provenance.revision, local_files_only=True)
    except Exception:  # not cached (LocalEntryNotFoundError), or huggingface_hub missing
        return None
    return Path(path)


def locate(model: Model) -> Source:
    """The files to load ``model`` from; a missing or incomplete folder raises naming the path."""
    path = Path(model.path)
    if not path.exists():
        cached = cached_snapshot(model.provenance)
        if cached is None:
            raise NotFound(f"{path}: the files of {model.name} are gone; re-import the model or fix the path")
        path = cached
    if model.format == Format.HF_DIR or path.is_dir():
        if not path.is_dir():
            raise DetectionError(f"{path}: {model.name} is a Hugging Face model folder, but this is a file")
        if not (path / "config.json").is_file():
            raise DetectionError(
                f"{path} has no config.json, which transformers needs to build {model.name}; "
                "point the record at the complete model folder"
            )
        return Source(folder=path)
    if path.suffix.lower() not in WEIGHT_SUFFIXES:
        raise DetectionError(f"{path}: not a weight file transformers can read (safetensors or a PyTorch checkpoint)")
    if not (path.parent / "config.json").is_file():
        raise DetectionError(
            f"{path}: a lone weight file carries no config.json, which transformers needs to build the model; "
            "keep it in its model folder beside config.json and the tokenizer files, and import that folder"
        )
    return Source(folder=path.parent, weights=path)
