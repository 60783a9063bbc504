"""Ollama's store: ``manifests/<registry>/<namespace>/<model>/<tag>`` (JSON) naming layers that live
in ``blobs/sha256-<hex>``.

The layer of media type ``application/vnd.ollama.image.model`` is a GGUF; it is recorded as
``model:tag`` (the name ``ollama list`` shows), with the projector layer
(``application/vnd.ollama.image.projector``) attached as its mmproj. The parameters layer's load options
and sampling defaults become the record's settings (:data:`PARAMS`), the system layer (the Modelfile's
``SYSTEM``) its ``system_prompt``, and each adapter layer (a GGUF LoRA) is bound to it after the usual
fit check. Ollama's Go-syntax template, its stop strings and licence are not recorded (the GGUF's own
chat template and end-of-turn tokens are used).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Iterator

from corral.ext.gguf import LLAMA_CPP_SETTINGS
from corral.ext.layout import Found
from corral.errors import NotFound
from corral.records import ComponentKind, Provenance, SettingSpec
from corral.sampling import DEFAULT_SETTINGS
from corral.settings import CORE_SETTINGS

HUB = "ollama"
MODEL_LAYER = "application/vnd.ollama.image.model"
PROJECTOR_LAYER = "application/vnd.ollama.image.projector"
PARAMS_LAYER = "application/vnd.ollama.image.params"
ADAPTER_LAYER = "application/vnd.ollama.image.adapter"
SYSTEM_LAYER = "application/vnd.ollama.image.system"
#: Ollama's sampling parameters -> Corral's sampling defaults (Ollama's ``num_predict`` -1, no limit,
#: is below ``max_tokens``' minimum and so stays Corral's default: no limit).
SAMPLING_PARAMS = {"temperature": "temperature", "top_p": "top_p", "top_k": "top_k",
                   "repeat_penalty": "repeat_penalty", "num_predict": "max_tokens"}
#: Ollama's llama.cpp load options -> Corral's settings of the same meaning.
LOAD_PARAMS = {"num_ctx": "n_ctx", "num_gpu": "n_gpu_layers", "num_thread": "threads", "num_batch": "n_batch",
               "main_gpu": "main_gpu", "use_mmap": "use_mmap", "use_mlock": "use_mlock", "seed": "seed"}
#: Ollama's parameters -> the specs of Corral's settings (their type and bounds), as the core, every
#: llama.cpp driver and :data:`corral.sampling.DEFAULT_SETTINGS` declare them (a request's own values win
#: over the sampling defaults).
_SPECS = {spec.name: spec for spec in (*CORE_SETTINGS, *LLAMA_CPP_SETTINGS, *DEFAULT_SETTINGS)}
PARAMS: dict[str, SettingSpec] = {theirs: _SPECS[ours] for theirs, ours in {**LOAD_PARAMS, **SAMPLING_PARAMS}.items()}
#: A parameters layer is a small JSON object, a system layer a short text; larger is neither.
MAX_PARAMS = 64 * 1024
DEFAULT_REGISTRY = "registry.ollama.ai"
#: Manifests are a few KB; anything this large is not one.
MAX_MANIFEST = 1024**2
_DIGEST = re.compile(r"^sha256[:-]([0-9a-f]{64})$")


def default_roots() -> list[Path]:
    """OLLAMA_MODELS, else ~/.ollama/models, else the Linux service's /usr/share/ollama/.ollama/models."""
    if os.environ.get("OLLAMA_MODELS"):
        return [Path(os.environ["OLLAMA_MODELS"]).expanduser()]
    return [Path("~/.ollama/models").expanduser(), Path("/usr/share/ollama/.ollama/models")]


def display_name(registry: str, namespace: str, model: str) -> str:
    """The name Ollama shows: ``llama3.2`` for its library, ``user/model``, or ``host/namespace/model``."""
    if registry == DEFAULT_REGISTRY:
        return model if namespace == "library" else f"{namespace}/{model}"
    return f"{registry}/{namespace}/{model}"


def blob_path(root: Path, digest: object) -> tuple[Path | None, str | None]:
    """(blob file, sha256 hex) for a layer digest; (None, None) for a digest that is not a SHA-256
    (manifests are untrusted: a digest never becomes a path unless it is exactly 64 hex digits)."""
    m = _DIGEST.match(digest) if isinstance(digest, str) else None
    if not m:
        return None, None
    hexdigest = m.group(1)
    for name in (f"sha256-{hexdigest}", f"sha256:{hexdigest}"):  # older Ollama used the colon form
        if (root / "blobs" / name).is_file():
            return root / "blobs" / name, hexdigest
    return root / "blobs" / f"sha256-{hexdigest}", hexdigest


def _read_manifest(path: Path) -> dict:
    if path.stat().st_size > MAX_MANIFEST:
        raise ValueError("too large for a manifest")
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("layers"), list):
        raise ValueError("no layers list")
    return data


def load_settings(path: Path) -> dict[str, Any]:
    """The settings in a parameters layer: load options and sampling defaults (see :data:`PARAMS`).
    Values of the wrong type or range, unknown options and an unreadable layer give nothing (the layer is
    Ollama's, not ours to refuse)."""
    try:
        data = json.loads(_small_text(path) or "")
    except ValueError:
        return {}
    settings: dict[str, Any] = {}
    for key, spec in PARAMS.items():
        value = data.get(key) if isinstance(data, dict) else None
        if spec.type is float and type(value) is int:
            value = float(value)  # JSON writes 1.0 as 1
        if type(value) is not spec.type or spec.out_of_range(value) is not None:
            continue
        settings[spec.name] = value
    return settings


def system_prompt(path: Path) -> str | None:
    """The text of a system layer (a Modelfile's ``SYSTEM``); None when unreadable, empty or too large."""
    return (_small_text(path) or "").strip() or None


def _small_text(path: Path) -> str | None:
    """A parameters or system layer's text; None when unreadable, not UTF-8 or over :data:`MAX_PARAMS`."""
    try:
        if path.stat().st_size > MAX_PARAMS:
            return None
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def find(root: Path) -> Iterator[Found]:
    """Every tagged model in the store, each as its model blob (with the projector blob, if any)."""
    root = Path(os.path.realpath(root))
    manifests = root / "manifests"
    if not manifests.is_dir():
        raise NotFound(f"{root}: no manifests/ folder, so not an Ollama models folder (see OLLAMA_MODELS)")
    for path in sorted(p for p in manifests.rglob("*") if p.is_file() and not p.name.startswith(".")):
        parts = path.relative_to(manifests).parts
        if len(parts) != 4:
            continue  # not registry/namespace/model/tag
        registry, namespace, model, tag = parts
        repo = display_name(registry, namespace, model)
        name = f"{repo}:{tag}"
        try:
            layers = _read_manifest(path)["layers"]
        except (OSError, ValueError) as exc:
            yield Found(path, name, problem=f"{path}: not a readable Ollama manifest ({exc})")
            continue
        by_type: dict[str, list] = {}
        for layer in layers:
            if isinstance(layer, dict):
                by_type.setdefault(layer.get("mediaType"), []).append(layer.get("digest"))
        if not by_type.get(MODEL_LAYER):
            yield Found(path, name, problem=f"{name} has no model layer (a cloud model?); nothing on disk to adopt")
            continue
        blob, sha = blob_path(root, by_type[MODEL_LAYER][0])
        if blob is None:
            yield Found(path, name, problem=f"{path}: the model layer's digest is not a sha256 digest")
            continue
        if not blob.is_file():
            yield Found(blob, name, problem=f"{name}: its blob {blob.name} is missing; re-pull it: ollama pull {name}")
            continue
        components = []
        for digest in by_type.get(PROJECTOR_LAYER, [])[:1]:
            projector, _ = blob_path(root, digest)
            if projector is not None and projector.is_file():
                components.append((ComponentKind.MMPROJ, projector))
        settings: dict[str, Any] = {}
        for digest in by_type.get(PARAMS_LAYER, [])[:1]:
            params, _ = blob_path(root, digest)
            if params is not None and params.is_file():
                settings = load_settings(params)
        for digest in by_type.get(SYSTEM_LAYER, [])[:1]:
            system, _ = blob_path(root, digest)
            text = system_prompt(system) if system is not None and system.is_file() else None
            if text:
                settings["system_prompt"] = text
        adapters = [a for a, _ in (blob_path(root, d) for d in by_type.get(ADAPTER_LAYER, [])) if a is not None]
        provenance = Provenance(hub=HUB, repo=repo, revision=tag, files=(f"sha256:{sha}",))
        yield Found(blob, name, provenance, tuple(components), settings=settings, loras=tuple(adapters), sha256=sha)
