"""Other tools' model stores, laid out as those tools write them, around real (tiny) model files.

* :func:`hf_cache_repo`: huggingface_hub's cache, ``models--org--name/{blobs,refs,snapshots}``, each
  snapshot file a relative symlink into ``blobs/`` named by the file's SHA-256 (LFS) or git SHA-1.
* :func:`ollama_model`: Ollama's ``manifests/registry.ollama.ai/library/<name>/<tag>`` JSON and
  ``blobs/sha256-<hex>`` files (model layer, projector layer, template and params layers).
* :func:`lmstudio_model`: LM Studio's ``<publisher>/<model>/`` folders.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Mapping, Sequence


def sha256_of(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def hf_cache_repo(
    cache: Path,
    repo: str,
    files: Mapping[str, Path],
    *,
    revision: str = "a" * 40,
    ref: str | None = "main",
) -> Path:
    """Put ``files`` (name in the repo -> a file to take the content from) into the cache as one snapshot.

    Weights (.gguf, .safetensors, .bin) are stored as LFS blobs (named by SHA-256), other files as git
    blobs (named by git's SHA-1), as huggingface_hub does. Returns the snapshot folder.
    """
    repo_dir = Path(cache) / ("models--" + repo.replace("/", "--"))
    blobs = repo_dir / "blobs"
    snapshot = repo_dir / "snapshots" / revision
    blobs.mkdir(parents=True, exist_ok=True)
    for name, source in files.items():
        data = Path(source).read_bytes()
        lfs = Path(name).suffix in (".gguf", ".safetensors", ".bin")
        blob = blobs / (hashlib.sha256(data).hexdigest() if lfs else _git_blob_sha1(data))
        if not blob.exists():
            blob.write_bytes(data)
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink():
            link.unlink()
        link.symlink_to(os.path.relpath(blob, link.parent))
    if ref:
        (repo_dir / "refs").mkdir(exist_ok=True)
        (repo_dir / "refs" / ref).write_text(revision)
    return snapshot


def hf_cache_dir(cache: Path, repo: str, folder: Path, **kwargs) -> Path:
    """A whole model folder (config, tokenizer, weights, subfolders) as one cached snapshot."""
    folder = Path(folder)
    files = {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*")) if p.is_file()}
    return hf_cache_repo(cache, repo, files, **kwargs)


def _blob(root: Path, source: Path | bytes) -> tuple[str, int]:
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    blob = Path(root) / "blobs" / f"sha256-{digest}"
    blob.parent.mkdir(parents=True, exist_ok=True)
    if not blob.exists():
        blob.write_bytes(data)
    return f"sha256:{digest}", len(data)


def ollama_model(
    root: Path,
    name: str,
    tag: str,
    model: Path,
    *,
    projector: Path | None = None,
    adapters: Sequence[Path] = (),
    params: Mapping[str, Any] | None = None,
    system: str | None = None,
    namespace: str = "library",
    registry: str = "registry.ollama.ai",
) -> Path:
    """Put ``model`` (a GGUF) into an Ollama store as ``name:tag``, with a projector, adapter layers and a
    parameters layer (``params``; default: only a stop string) and a system layer (``system``) as
    ``ollama create`` writes them; returns
    the model blob."""
    layers = []
    digest, size = _blob(root, model)
    layers.append({"mediaType": "application/vnd.ollama.image.model", "digest": digest, "size": size})
    if projector is not None:
        pdigest, psize = _blob(root, projector)
        layers.append({"mediaType": "application/vnd.ollama.image.projector", "digest": pdigest, "size": psize})
    for adapter in adapters:
        adigest, asize = _blob(root, adapter)
        layers.append({"mediaType": "application/vnd.ollama.image.adapter", "digest": adigest, "size": asize})
    texts = [
        ("application/vnd.ollama.image.template", b"{{ .Prompt }}"),
        ("application/vnd.ollama.image.params", json.dumps(params or {"stop": ["</s>"]}).encode()),
    ]
    if system is not None:
        texts.append(("application/vnd.ollama.image.system", system.encode()))
    for media, body in texts:
        d, s = _blob(root, body)
        layers.append({"mediaType": media, "digest": d, "size": s})
    config_digest, config_size = _blob(root, json.dumps({"model_format": "gguf", "model_family": "llama"}).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": config_digest,
                   "size": config_size},
        "layers": layers,
    }
    path = Path(root) / "manifests" / registry / namespace / name / tag
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest))
    return Path(root) / "blobs" / f"sha256-{digest.split(':')[1]}"


def lmstudio_model(root: Path, publisher: str, model: str, files: Mapping[str, Path]) -> Path:
    """Copy ``files`` (name -> source) into LM Studio's ``publisher/model`` folder; returns the folder."""
    folder = Path(root) / publisher / model
    folder.mkdir(parents=True, exist_ok=True)
    for name, source in files.items():
        shutil.copyfile(source, folder / name)
    return folder
