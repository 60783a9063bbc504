"""The create and tokenizer routes (``/corral/create``, ``/corral/tokenizers``) of a served library:
the preview is the dry run's document, paths keep to the allowed folders, errors are the command's
messages, and a tokenizer the body's corpus cannot make leaves nothing behind (the web UI's tests train one)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from corral.testing import serving
from corral.testing.cli import as_json


@pytest.fixture
def served(library):
    with serving(library) as server:
        yield server


def call(server, path: str, body: dict | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(server.url + path, method="GET" if body is None else "POST",
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_preview_is_the_dry_run_and_errors_are_its_messages(served, run, library, tmp_path):
    root = library.store.path.parent  # the library's home: the server's allowed folder
    status, options = call(served, "/corral/create")
    assert status == 200 and options["preset_names"] == ["small", "medium", "large", "free"]
    assert options["presets"]["small"]["hidden_size"] == 768 and options["tokenizers"] == []
    out = str(root / "created" / "m")
    status, preview = call(served, "/corral/create/preview", {"preset": "small", "layers": 6, "path": out})
    dry = as_json(run("create", "--preset", "small", "--layers", "6", "--out", out, "--dry-run", "--json"))
    assert status == 200
    for doc in (preview, dry):
        doc["memory"].pop("available"), doc["memory"].pop("fits")
    assert {k: v for k, v in preview.items() if k != "rows"} == dry
    assert ["parameters", f"{dry['parameters']:,} ({dry['parameters'] / 1e6:.1f}M)"] in preview["rows"]

    status, error = call(served, "/corral/create/preview", {"preset": "small", "heads": 5, "path": out})
    assert status == 422 and error["error"]["message"].startswith("hidden size 768 is not divisible by 5")
    status, error = call(served, "/corral/create/preview", {"preset": "small", "layers": "6", "path": out})
    assert status == 400 and error["error"]["message"] == "field 'layers' must be a whole number"
    status, error = call(served, "/corral/create", {"preset": "small", "path": str(tmp_path / "elsewhere")})
    assert status == 403 and "outside the allowed folders" in error["error"]["message"]
    status, error = call(served, "/corral/create", {"preset": "small", "tokenizer": "nope", "path": out})
    assert status == 404 and "no saved tokenizer 'nope'" in error["error"]["message"]
    assert not (root / "created").exists() and library.store.list_models() == []


def test_tokenizer_training_refusals_leave_nothing(served, corpus, library):
    root = library.store.path.parent
    text = corpus.read_text(encoding="utf-8")
    status, error = call(served, "/corral/tokenizers/train", {"name": "t", "type": "bpe", "vocab_size": 400, "text": text})
    assert status == 422 and "outside 8,000–50,000" in error["error"]["message"]
    status, error = call(served, "/corral/tokenizers/train", {"name": "../up", "type": "bpe", "text": text})
    assert status == 400 and "letters, digits" in error["error"]["message"]
    status, error = call(served, "/corral/tokenizers/train", {"name": "t", "type": "bpe", "vocab_size": 8000, "text": text})
    assert status == 422 and "too small for a 8,000-token BPE vocabulary" in error["error"]["message"]
    assert [p.name for p in (root / "tokenizers").iterdir()] == []  # neither the upload nor a half tokenizer stays
