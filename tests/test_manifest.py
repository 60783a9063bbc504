"""Manifests: provenance, files with sizes and SHA-256, quantization, LoRA fusion state, components and
disk use, written beside the library and regenerated on demand; hashes go back into the records."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from factories import write_embedding_dir, write_lora_gguf, write_mmproj_gguf, write_tiny_gguf
from factories_stores import ollama_model, sha256_of
from corral.testing.cli import as_json


def manifest(home: Path, model_id: str) -> dict:
    return json.loads((home / "manifests" / f"{model_id}.json").read_text())


@pytest.fixture
def chat(run, tmp_path) -> dict:
    folder = tmp_path / "chat"
    write_tiny_gguf(folder / "tiny-chat.gguf")
    write_mmproj_gguf(folder / "mmproj-tiny.gguf")
    model = as_json(run("import", folder / "tiny-chat.gguf", "--json"))["model"]
    as_json(run("lora", "add", model["name"], write_lora_gguf(tmp_path / "style.gguf"), "--weight", "0.5", "--json"))
    return model


def test_sync_writes_a_full_manifest_and_saves_hashes(run, home, chat, tmp_path):
    results = as_json(run("manifest", "sync", "--json"))
    assert [(r["model"], r["files"], r["hashed"], r["skipped"]) for r in results] == [("tiny-chat", 3, 3, 0)]
    data = manifest(home, chat["id"])
    files = {Path(f["path"]).name: f for f in data["files"]}
    assert set(files) == {"tiny-chat.gguf", "mmproj-tiny.gguf", "style.gguf"}
    for f in files.values():
        content = Path(f["path"]).read_bytes()
        assert f["size"] == len(content)
        assert f["sha256"] == hashlib.sha256(content).hexdigest() and f["sha256_source"] == "computed"
    assert files["mmproj-tiny.gguf"]["role"] == "component:mmproj"
    assert files["style.gguf"]["role"] == "lora:style"
    assert data["quantization"] == "F16" and data["architecture"] == "llama"
    assert data["lora_fusion"]["state"] == "unfused"
    assert [(l["name"], l["weight"]) for l in data["lora_fusion"]["unfused"]] == [("style", 0.5)]
    assert data["components"][0]["kind"] == "mmproj"
    assert data["components"][0]["sha256"] == files["mmproj-tiny.gguf"]["sha256"]
    assert data["disk_usage"] == {"bytes": sum(f["size"] for f in files.values()), "files": 3, "shared_with": []}
    assert data["provenance"]["hub"] is None and data["missing"] == []
    # Hashes went back into the record, without counting as a use of the model.
    record = as_json(run("show", "tiny-chat", "--json"))["model"]
    assert record["sha256"] == files["tiny-chat.gguf"]["sha256"]
    assert record["components"][0]["sha256"] == files["mmproj-tiny.gguf"]["sha256"]
    assert record["updated"] == chat["updated"]


def test_unchanged_files_are_not_hashed_again(run, home, chat):
    as_json(run("manifest", "sync", "--json"))
    as_json(run("manifest", "sync", "tiny-chat", "--json"))
    data = manifest(home, chat["id"])
    assert {f["sha256_source"] for f in data["files"]} == {"unchanged since last sync"}
    weights = Path(chat["path"])
    weights.write_bytes(weights.read_bytes()[:-1] + b"\x01")  # same size, new content and mtime
    as_json(run("manifest", "sync", "--json"))
    entry = next(f for f in manifest(home, chat["id"])["files"] if f["role"] == "weights")
    assert entry["sha256_source"] == "computed" and entry["sha256"] == sha256_of(weights)


def test_fast_skips_large_files_and_says_so(run, home, chat, monkeypatch):
    import corral.manifests

    monkeypatch.setattr(corral.manifests, "FAST_HASH_LIMIT", 150_000)  # the tiny model is 225 KB
    results = as_json(run("manifest", "sync", "--fast", "--json"))
    assert (results[0]["hashed"], results[0]["skipped"]) == (2, 1)
    files = {f["role"]: f for f in manifest(home, chat["id"])["files"]}
    assert files["weights"]["sha256"] is None
    assert "--fast skips files over" in files["weights"]["sha256_source"]
    assert files["component:mmproj"]["sha256"] is not None
    assert as_json(run("show", "tiny-chat", "--json"))["model"]["sha256"] is None


def test_ollama_blob_name_trusted_by_fast_verified_by_full(run, home, tmp_path):
    root = tmp_path / "ollama"
    blob = ollama_model(root, "tiny", "latest", write_tiny_gguf(tmp_path / "t.gguf"))
    as_json(run("scan", "--ollama", root, "--json"))
    model = as_json(run("ls", "--json"))[0]
    as_json(run("manifest", "sync", "--fast", "--json"))
    (entry,) = manifest(home, model["id"])["files"]
    assert entry["sha256_source"] == "store name" and entry["sha256"] == blob.name.split("-")[1]
    assert manifest(home, model["id"])["provenance"]["hub"] == "ollama"
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0xFF  # bit rot in the blob
    blob.write_bytes(bytes(data))
    out = run("manifest", "sync")
    assert out.exit_code == 0
    assert "does not match its store name" in out.stderr


def test_show_table_json_and_not_synced(run, home, chat, tmp_path):
    other = as_json(run("import", write_embedding_dir(tmp_path / "emb"), "--json"))["model"]
    assert "not synced" in run("manifest", "show").stdout
    as_json(run("manifest", "sync", "tiny-chat", "--json"))
    shown = run("manifest", "show")
    line = next(l for l in shown.stdout.splitlines() if l.startswith("tiny-chat"))
    assert "F16" in line and "3/3" in line and "unfused (1)" in line
    data = as_json(run("manifest", "show", "--json"))
    assert [d["name"] for d in data] == ["tiny-chat"]
    as_json(run("manifest", "sync", "--json"))
    emb = manifest(home, other["id"])
    assert emb["quantization"] == "float32" and emb["lora_fusion"]["state"] == "none"
    assert emb["disk_usage"]["files"] == len(emb["files"]) > 3


def test_rm_and_sync_drop_manifests_of_removed_models(run, home, chat):
    as_json(run("manifest", "sync", "--json"))
    path = home / "manifests" / f"{chat['id']}.json"
    assert path.exists()
    as_json(run("rm", "tiny-chat", "--yes", "--json"))
    assert not path.exists()  # rm forgets the manifest with the record
    stale = home / "manifests" / "0123456789abcdef.json"  # left by an older version or a crash
    stale.write_text("{}")
    as_json(run("manifest", "sync", "--json"))
    assert not stale.exists()


def test_missing_files_and_unknown_model(run, home, chat):
    os.unlink(chat["path"])
    out = run("manifest", "sync")
    assert out.exit_code == 0 and "missing" in out.stderr
    assert manifest(home, chat["id"])["missing"] == [chat["path"]]
    bad = run("manifest", "sync", "ghost")
    assert bad.exit_code != 0 and "ghost" in bad.stderr and "Traceback" not in bad.output
