"""Where a record's files are: a Hugging Face model folder, a lone weight file beside its ``config.json``,
or the model's snapshot in the Hugging Face cache when the recorded path is gone.

Everything is local: the cache is read from disk and transformers is called with ``local_files_only``, so a
load never reaches the network.
"""

from __future__ import annotations

from pathlib import Path

from attrs import frozen

from corral.api import DetectionError, NotFound
from corral.api import Format, Model, Provenance

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")
#: A ref file holds one commit hash.
_MAX_REF = 256


@frozen
class Source:
    """A model's folder (config.json, tokenizer) and, for a lone weight file, that file."""

    folder: Path
    weights: Path | None = None


def cached_snapshot(provenance: Provenance) -> Path | None:
    """The Hugging Face cache snapshot of ``provenance``'s repository and revision, if it is there.

    Read from the cache's own layout (``models--org--name/snapshots/<commit>``, refs in ``refs/``) under
    HF_HUB_CACHE, HF_HOME/hub or ~/.cache/huggingface/hub, as ``corral scan --hf-cache`` reads it.
    """
    from corral.api import hf_cache_roots as default_roots

    if provenance.hub not in (None, "huggingface") or not provenance.repo:
        return None
    folder = "models--" + provenance.repo.replace("/", "--")
    revision = provenance.revision or "main"
    for root in default_roots():
        repo_dir = root / folder
        ref = repo_dir / "refs" / revision
        try:
            if ref.is_file() and ref.stat().st_size <= _MAX_REF:
                revision = ref.read_text(encoding="utf-8", errors="replace").strip()
        except OSError:
            continue
        snapshots = (repo_dir / "snapshots").resolve()
        snapshot = (snapshots / revision).resolve()
        if snapshot.parent == snapshots and snapshot.is_dir():  # a revision never climbs out of the cache
            return snapshot
    return None


def locate(model: Model) -> Source:
    """The files to load ``model`` from; a missing or incomplete folder raises naming the path."""
    path = Path(model.path)
    if not path.exists():
        cached = cached_snapshot(model.provenance)
        if cached is None:
            raise NotFound(f"{path}: the files of {model.name} are gone; if they moved: corral edit {model.name} "
                           f"--path NEW_PATH, else re-import the model")
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
