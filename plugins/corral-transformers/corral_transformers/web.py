"""``corral create`` and ``corral tokenizer train`` over HTTP (``corral serve``; the web UI's create page).

- ``GET /corral/create``: the presets, limits and choices a form needs, and the tokenizers saved under
  ``CORRAL_HOME/tokenizers``;
- ``POST /corral/create/preview``: what ``corral create --dry-run --json`` prints, with its lines;
- ``POST /corral/create``: writes the model as ``corral create`` does and adds it to the library;
- ``POST /corral/tokenizers/train``: trains a tokenizer on a corpus sent in the body (its text) into
  ``CORRAL_HOME/tokenizers/NAME``, as ``corral tokenizer train`` does.

A create body names its output folder ``path`` and a tokenizer folder ``dir``, so the server's rule on
management bodies (absolute paths under the allowed folders) checks both; ``tokenizer`` is ``default`` or
the name of a saved tokenizer. Every route is ``management``: each writes files or reads the machine.
Starlette is imported when the server builds its routes; torch and transformers when a model is written.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping

from corral.api import InvalidRequest, NotFound, http_endpoint, service_of, to_data
from corral_transformers import create, spec as specs
from corral_transformers import tokenizer_train

#: Saved tokenizers live in this folder of the library's home, one folder each.
TOKENIZERS = "tokenizers"
#: Where the page suggests writing new models.
CREATED = "created"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def _json(data: Any, status: int = 200) -> Any:
    from starlette.responses import JSONResponse

    return JSONResponse(data, status)


async def _body(request: Any) -> dict:
    raw = await request.body()
    try:
        body = json.loads(raw) if raw else {}
    except ValueError:
        raise InvalidRequest("the body is not JSON") from None
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    return body


def home_of(library: Any) -> Path:
    return Path(library.store.path).parent


def tokenizer_folder(library: Any, name: str) -> Path:
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidRequest(f"tokenizer name {str(name)[:80]!r}: letters, digits, '.', '_' and '-' (at most 64)")
    return home_of(library) / TOKENIZERS / name


def _token_count(folder: Path) -> int | None:
    """Tokens in a saved ``tokenizer.json`` (its vocabulary and added tokens), read without transformers."""
    try:
        data = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    vocab = (data.get("model") or {}).get("vocab") or {}
    ids = list(vocab.values()) if isinstance(vocab, dict) else list(range(len(vocab)))
    ids += [t.get("id", -1) for t in data.get("added_tokens") or ()]
    return max(ids) + 1 if ids else None


def saved_tokenizers(library: Any) -> list[dict[str, Any]]:
    """The tokenizers under ``CORRAL_HOME/tokenizers``: name, folder, type and size."""
    root = home_of(library) / TOKENIZERS
    found = []
    for folder in sorted(root.iterdir() if root.is_dir() else (), key=lambda p: p.name.lower()):
        if folder.name.startswith(".") or not (folder / "tokenizer_config.json").is_file():
            continue
        kind = "sentencepiece" if (folder / "tokenizer.model").is_file() else "bpe"
        found.append({"name": folder.name, "path": str(folder), "type": kind, "vocab_size": _token_count(folder)})
    return found


def options(library: Any) -> dict[str, Any]:
    """What the create and tokenizer forms offer: presets with their shapes, ranges, choices, folders."""
    return {
        "architecture": specs.ARCHITECTURE,
        "presets": {name: dict(values) for name, values in specs.PRESETS.items()},
        "preset_names": list(specs.PRESET_NAMES),
        "free_defaults": dict(specs.FREE_DEFAULTS),
        "free_required": ["hidden_size", "layers"],
        "limits": {name: list(bounds) for name, bounds in specs.LIMITS.items()},
        "flags": dict(specs.FLAGS),
        "dtypes": sorted(specs.BYTES_PER_PARAMETER),
        "created_folder": str(home_of(library) / CREATED),
        "tokenizers": saved_tokenizers(library),
        "tokenizer_types": list(tokenizer_train.TYPES),
        "tokenizer_vocab": {"range": list(tokenizer_train.VOCAB_RANGE), "recommended": list(tokenizer_train.RECOMMENDED),
                            "default": tokenizer_train.DEFAULT_VOCAB},
    }


def _whole(body: Mapping[str, Any], name: str, default: Any = None) -> Any:
    value = body.get(name, default)
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise InvalidRequest(f"field {name!r} must be a whole number")


def plan_of(library: Any, body: Mapping[str, Any]) -> create.Plan:
    """The create plan a body asks for (the fields of ``corral create``'s options, by their names)."""
    preset = body.get("preset", "small")
    if not isinstance(preset, str):
        raise InvalidRequest("field 'preset' must be a string")
    shape = {name: _whole(body, name) for name in create.SHAPE_FIELDS if name != "tie_embeddings"}
    tie = body.get("tie_embeddings")
    if tie is not None and not isinstance(tie, bool):
        raise InvalidRequest("field 'tie_embeddings' must be true, false or null (the preset's)")
    shape["tie_embeddings"] = tie
    out = body.get("path")
    if not isinstance(out, str) or not out:
        raise InvalidRequest("field 'path': the absolute path of the folder to write the model into")
    tokenizer = body.get("tokenizer") or "default"
    if body.get("dir"):
        tokenizer = body["dir"]  # a tokenizer folder, checked against the allowed folders by the server
    elif tokenizer != "default":
        folder = tokenizer_folder(library, tokenizer)
        if not folder.is_dir():
            raise NotFound(f"no saved tokenizer {tokenizer!r} (in {folder.parent}); train one first")
        tokenizer = str(folder)
    dtype = body.get("dtype", "float32")
    if not isinstance(dtype, str):
        raise InvalidRequest("field 'dtype' must be a string")
    return create.plan(preset, shape, out=Path(out), tokenizer=tokenizer, dtype=dtype,
                       seed=_whole(body, "seed", 0) or 0)


def _shown(data: Mapping[str, Any]) -> dict[str, Any]:
    return {**data, "rows": [list(row) for row in create.preview_rows(data)]}


def preview(library: Any, body: Mapping[str, Any]) -> dict[str, Any]:
    return _shown(plan_of(library, body).data)


def write(library: Any, body: Mapping[str, Any]) -> dict[str, Any]:
    force = body.get("force", False)
    if not isinstance(force, bool):
        raise InvalidRequest("field 'force' must be true or false")
    plan = plan_of(library, body)
    out, model = create.create(library, plan, force=force)
    return {**_shown(plan.data), "path": str(out), "model": to_data(model)}


def train(library: Any, body: Mapping[str, Any]) -> dict[str, Any]:
    """Train a tokenizer on the corpus text of the body into ``CORRAL_HOME/tokenizers/NAME``."""
    from corral_transformers.outdir import check_output_dir

    out = tokenizer_folder(library, body.get("name"))
    kind = body.get("type")
    if kind not in tokenizer_train.TYPES:
        raise InvalidRequest(f"field 'type': {' or '.join(tokenizer_train.TYPES)}")
    vocab_size = _whole(body, "vocab_size", tokenizer_train.DEFAULT_VOCAB)
    text, filename = body.get("text"), body.get("filename") or "corpus.txt"
    if not isinstance(text, str):
        raise InvalidRequest("field 'text': the corpus, UTF-8 text with one sentence per line")
    if not isinstance(filename, str) or not _NAME.match(Path(filename).name):
        filename = "corpus.txt"
    force = body.get("force", False)
    if not isinstance(force, bool):
        raise InvalidRequest("field 'force' must be true or false")
    note = tokenizer_train.check_vocab_size(vocab_size)
    out = check_output_dir(out, force=force)
    out.parent.mkdir(parents=True, exist_ok=True)
    upload = Path(tempfile.mkdtemp(prefix=".upload-", dir=out.parent))
    try:
        corpus = upload / Path(filename).name
        corpus.write_text(text, encoding="utf-8")
        result = tokenizer_train.train(corpus, kind, vocab_size, out)
    finally:
        shutil.rmtree(upload, ignore_errors=True)
    return {**result, "name": out.name, "corpus": Path(filename).name, "note": note}


def _endpoint(view: Any, *, load: bool = False) -> Any:
    @http_endpoint
    async def endpoint(request: Any) -> Any:
        body = await _body(request) if request.method == "POST" else {}
        service = service_of(request)
        runtime = service.runtime
        return _json(await service.in_thread(lambda: view(runtime.lib(), body), load=load))

    endpoint.__name__ = view.__name__
    return endpoint


def routes() -> list[Any]:
    """The routes, for ``register_routes`` (all of scope ``management``)."""
    from starlette.routing import Route

    return [
        Route("/corral/create", _endpoint(lambda lib, body: options(lib)), methods=["GET"]),
        Route("/corral/create", _endpoint(write, load=True), methods=["POST"]),
        Route("/corral/create/preview", _endpoint(preview), methods=["POST"]),
        Route("/corral/tokenizers", _endpoint(lambda lib, body: {"tokenizers": saved_tokenizers(lib)}), methods=["GET"]),
        Route("/corral/tokenizers/train", _endpoint(train, load=True), methods=["POST"]),
    ]
