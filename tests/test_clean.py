"""Cleanup: preview never deletes; apply shows the list, wants a confirmation, and never deletes a file
another record uses or a loaded model; the Hugging Face cache is cleaned through huggingface_hub."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import attrs
import pytest

from factories import write_embedding_dir, write_lora_gguf, write_mmproj_gguf, write_tiny_gguf
from factories_stores import hf_cache_repo, ollama_model
from corral.testing.cli import as_json, assert_clean_error


def names(run) -> list[str]:
    return sorted(m["name"] for m in as_json(run("ls", "--json")))


@pytest.fixture
def shelf(run, library, tmp_path) -> dict[str, Path]:
    """Two chat models sharing one projector, one with a LoRA; an F32 model; an embedding folder."""
    root = tmp_path / "shelf"
    files = {
        "a": write_tiny_gguf(root / "a" / "chat-a.gguf", seed=1),
        "mmproj": write_mmproj_gguf(root / "a" / "mmproj-shared.gguf"),
        "b": write_tiny_gguf(root / "b" / "chat-b.gguf", seed=2),
        "f32": write_tiny_gguf(root / "c" / "chat-f32.gguf", file_type=0, seed=3),
        "lora": write_lora_gguf(root / "loras" / "style.gguf"),
        "embed": write_embedding_dir(root / "embed"),
    }
    for key in ("a", "b", "f32", "embed"):
        as_json(run("import", files[key], "--json"))
    as_json(run("component", "add", "chat-b", "mmproj", files["mmproj"], "--json"))
    as_json(run("lora", "add", "chat-a", files["lora"], "--json"))
    return files


def test_preview_lists_and_frees_but_never_deletes(run, shelf):
    plan = as_json(run("clean", "preview", "--quant", "f16", "--json"))
    chosen = {c["name"]: c for c in plan["candidates"]}
    assert set(chosen) == {"chat-a", "chat-b"}
    a = {Path(f["path"]).name: f for f in chosen["chat-a"]["files"]}
    assert a["chat-a.gguf"]["action"] == "delete" and a["chat-a.gguf"]["size"] == shelf["a"].stat().st_size
    assert a["style.gguf"]["action"] == "delete"  # its LoRA, bound to nothing else
    # The projector both use goes only when both go: here both are chosen, so it is freed once.
    frees = sum(shelf[k].stat().st_size for k in ("a", "b", "mmproj", "lora"))
    assert plan["frees"] == frees
    text = run("clean", "preview", "--quant", "F16").stdout
    assert "chat-a" in text and "delete" in text
    assert all(p.exists() for p in shelf.values())
    assert names(run) == ["chat-a", "chat-b", "chat-f32", "embed"]


def test_filters(run, library, shelf):
    def chosen(*args):
        return sorted(c["name"] for c in as_json(run("clean", "preview", *args, "--json"))["candidates"])

    assert chosen("--category", "embedding") == ["embed"]
    assert chosen("--quant", "F32") == ["chat-f32"]
    assert chosen("--quant", "float32") == ["embed"]  # a folder's dtype
    assert chosen("--quant", "F16", "--category", "embedding") == []
    assert chosen("--unused-days", "30") == []
    old = library.store.get_model("chat-f32")
    library.store.update_model(attrs.evolve(old, updated=old.updated - timedelta(days=90)), touch=False)
    assert chosen("--unused-days", "30") == ["chat-f32"]
    from corral.records import Measurement

    library.store.record_measurement(Measurement(model_id=old.id, settings={}, ram=1))  # loaded just now
    assert chosen("--unused-days", "30") == []
    model = library.store.get_model("embed")
    library.store.update_model(attrs.evolve(model, tags=("old-experiments",)))
    assert chosen("--tag", "OLD-experiments") == ["embed"]
    assert_clean_error(run("clean", "preview"), "at least one filter")


def test_apply_needs_confirmation_without_a_terminal(run, shelf):
    assert_clean_error(run("clean", "apply", "--quant", "F32"), "--yes")
    assert shelf["f32"].exists() and "chat-f32" in names(run)


def test_apply_asks_on_a_terminal(run, shelf, monkeypatch):
    monkeypatch.setattr("corral.cli.maintenance_cmds.on_terminal", lambda: True)
    declined = run("clean", "apply", "--quant", "F32", input="n\n")
    assert declined.exit_code != 0 and "Delete these files and records?" in declined.stdout
    assert shelf["f32"].exists() and "chat-f32" in names(run)
    accepted = run("clean", "apply", "--quant", "F32", input="y\n")
    assert accepted.exit_code == 0 and not shelf["f32"].exists() and "chat-f32" not in names(run)


def test_apply_deletes_files_and_records(run, shelf):
    out = as_json(run("clean", "apply", "--quant", "F16", "--yes", "--json"))
    assert sorted(out["report"]["removed"]) == ["chat-a", "chat-b"]
    assert not shelf["a"].exists() and not shelf["b"].exists() and not shelf["lora"].exists()
    assert not shelf["mmproj"].exists()  # used only by the two that went
    assert out["report"]["freed"] == out["plan"]["frees"] > 0
    assert names(run) == ["chat-f32", "embed"]
    assert as_json(run("lora", "ls", "--json")) == []
    assert shelf["f32"].exists() and shelf["embed"].exists()


def test_apply_refuses_a_file_another_record_uses(run, library, shelf):
    b = library.store.get_model("chat-b")
    library.store.update_model(attrs.evolve(b, tags=("scratch",)))
    out = run("clean", "apply", "--tag", "scratch", "--yes")
    assert out.exit_code == 0, out.output
    assert f"keep {shelf['mmproj']} (also used by chat-a)" in out.stdout
    assert not shelf["b"].exists()
    assert shelf["mmproj"].exists() and shelf["a"].exists()
    assert names(run) == ["chat-a", "chat-f32", "embed"]


def test_apply_refuses_a_loaded_model(run, library, shelf):
    a = library.store.get_model("chat-a")
    library.store.acquire_lease(a.id)  # this live process holds it loaded
    try:
        plan = as_json(run("clean", "preview", "--quant", "F16", "--json"))
        blocked = {c["name"]: c["blocked"] for c in plan["candidates"]}
        assert "loaded" in blocked["chat-a"] and blocked["chat-b"] is None
        out = as_json(run("clean", "apply", "--quant", "F16", "--yes", "--json"))
        assert out["report"]["removed"] == ["chat-b"]
        assert any("chat-a" in s and "loaded" in s for s in out["report"]["skipped"])
    finally:
        library.store.release_lease(a.id)
    assert shelf["a"].exists() and shelf["lora"].exists() and shelf["mmproj"].exists()  # chat-a's, kept
    assert not shelf["b"].exists()
    assert names(run) == ["chat-a", "chat-f32", "embed"]


def test_a_file_used_since_the_list_was_shown_stays(library, shelf, tmp_path):
    from corral.clean import Filters, apply_clean, plan_clean

    plan = plan_clean(library, Filters(quant="F32"))
    assert [f.action for f in plan.candidates[0].files] == ["delete"]
    # Meanwhile another record takes the same file as a copy of itself.
    other = library.import_path(write_tiny_gguf(tmp_path / "late.gguf", seed=7)).model
    library.store.update_model(attrs.evolve(other, copies=(shelf["f32"],)))
    report = apply_clean(library, plan)
    assert report.removed == ("chat-f32",) and report.deleted == ()
    assert shelf["f32"].exists()


def test_model_folder_goes_whole(run, shelf):
    size = sum(p.stat().st_size for p in shelf["embed"].rglob("*") if p.is_file())
    plan = as_json(run("clean", "preview", "--category", "embedding", "--json"))
    (candidate,) = plan["candidates"]
    assert [(f["role"], f["size"]) for f in candidate["files"]] == [("model folder", size)]
    out = run("clean", "apply", "--category", "embedding", "--yes")
    assert out.exit_code == 0 and not shelf["embed"].exists()


def test_missing_records_are_forgotten(run, shelf):
    shelf["f32"].unlink()
    plan = as_json(run("clean", "preview", "--missing", "--json"))
    assert [c["name"] for c in plan["candidates"]] == ["chat-f32"] and plan["frees"] == 0
    as_json(run("clean", "apply", "--missing", "--yes", "--json"))
    assert names(run) == ["chat-a", "chat-b", "embed"]


def test_files_in_another_tools_store_are_left_to_it(run, tmp_path):
    root = tmp_path / "ollama"
    blob = ollama_model(root, "tiny", "latest", write_tiny_gguf(tmp_path / "t.gguf"))
    as_json(run("scan", "--ollama", root, "--json"))
    out = as_json(run("clean", "apply", "--category", "chat", "--yes", "--json"))
    assert out["report"] is None
    assert "ollama rm" in out["plan"]["candidates"][0]["blocked"]
    assert blob.exists() and names(run) == ["tiny:latest"]


# --- the Hugging Face cache --------------------------------------------------------------------------


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    pytest.importorskip("huggingface_hub")
    cache = tmp_path / "hub"
    first = write_tiny_gguf(tmp_path / "src" / "m.gguf", seed=1)
    second = write_tiny_gguf(tmp_path / "src" / "m2.gguf", seed=2)
    hf_cache_repo(cache, "org/m", {"m.gguf": first}, revision="1" * 40, ref=None)
    hf_cache_repo(cache, "org/m", {"m.gguf": second}, revision="2" * 40, ref="main")
    hf_cache_repo(cache, "org/keep", {"k.gguf": write_tiny_gguf(tmp_path / "src" / "k.gguf", seed=3)},
                  revision="3" * 40)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return cache


def test_hf_cache_scan_lists_revisions(run, cache):
    as_json(run("scan", "--hf-cache", "--json"))
    data = as_json(run("clean", "hf-cache", "--scan", "--json"))
    revs = {r["revision"]: r for r in data["revisions"]}
    assert set(revs) == {"1" * 40, "2" * 40, "3" * 40}
    assert revs["2" * 40]["refs"] == ["main"] and revs["1" * 40]["refs"] == []
    assert revs["1" * 40]["used_by"] == ["org/m@1111111"] and revs["2" * 40]["used_by"] == ["org/m"]
    assert revs["1" * 40]["size"] == (cache / "models--org--m" / "snapshots" / ("1" * 40) / "m.gguf").stat().st_size
    assert "org/keep" in run("clean", "hf-cache").stdout


def test_hf_cache_delete_goes_through_huggingface_hub(run, library, cache):
    from huggingface_hub import scan_cache_dir

    as_json(run("scan", "--hf-cache", "--json"))
    # Cleanup of the library does not touch the cache: it points at huggingface_hub's deletion.
    out = as_json(run("clean", "apply", "--category", "chat", "--yes", "--json"))
    assert out["report"] is None
    assert all("clean hf-cache --delete" in c["blocked"] for c in out["plan"]["candidates"])
    assert_clean_error(run("clean", "hf-cache", "--delete", "1111111"), "--yes")
    assert_clean_error(run("clean", "hf-cache", "--delete", "9999999", "--yes"), "9999999")
    keep = library.store.get_model("org/keep")
    library.store.acquire_lease(keep.id)
    try:
        assert_clean_error(run("clean", "hf-cache", "--delete", "org/keep", "--yes"), "org/keep", "loaded")
    finally:
        library.store.release_lease(keep.id)
    done = as_json(run("clean", "hf-cache", "--delete", "1111111", "--yes", "--json"))
    assert done["executed"] and done["records"] == ["org/m@1111111"] and done["frees"] > 0
    revisions = {rev.commit_hash for repo in scan_cache_dir(cache).repos for rev in repo.revisions}
    assert revisions == {"2" * 40, "3" * 40}  # gone, as huggingface_hub itself sees the cache
    assert (cache / "models--org--m" / "snapshots" / ("2" * 40) / "m.gguf").exists()
    assert names(run) == ["org/keep", "org/m"]
    as_json(run("clean", "hf-cache", "--delete", "org/m", "--yes", "--json"))  # a repo: all its revisions
    assert {r.repo_id for r in scan_cache_dir(cache).repos} == {"org/keep"}
    assert names(run) == ["org/keep"]


def test_hf_cache_not_there(run, tmp_path):
    pytest.importorskip("huggingface_hub")
    assert_clean_error(run("clean", "hf-cache", "--dir", tmp_path / "nowhere"), "no Hugging Face cache")
