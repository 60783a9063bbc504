"""Adopting models other tools keep, in place: the Hugging Face cache, Ollama, LM Studio and any folder
(text-generation-webui's models/). Each store is laid out as its tool writes it, around tiny real model
files; re-scanning adds nothing; a removed file shows as missing; the same file twice is one record."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from factories import write_embedding_dir, write_lora_gguf, write_mmproj_gguf, write_tiny_gguf
from factories_stores import hf_cache_dir, hf_cache_repo, lmstudio_model, ollama_model, sha256_of
from corral.testing.cli import as_json, assert_clean_error


def by_status(entries, status):
    return sorted(e["name"] for e in entries if e["status"] == status)


def models(run) -> dict[str, dict]:
    return {m["name"]: m for m in as_json(run("ls", "--json"))}


@pytest.fixture
def src(tmp_path) -> dict[str, Path]:
    """Distinct tiny files to put into stores (same shapes, different weights, so the same sizes)."""
    d = tmp_path / "src"
    return {
        "q8": write_tiny_gguf(d / "Tiny-Q8_0.gguf", seed=1),
        "f16": write_tiny_gguf(d / "Tiny-F16.gguf", seed=2),
        "other": write_tiny_gguf(d / "other.gguf", seed=3),
        "mmproj": write_mmproj_gguf(d / "mmproj-tiny-f16.gguf"),
        "embed": write_embedding_dir(d / "embed"),
    }


# --- Hugging Face cache --------------------------------------------------------------------------------


@pytest.fixture
def hf_cache(tmp_path, monkeypatch, src) -> Path:
    cache = tmp_path / "hf" / "hub"
    readme = tmp_path / "README.md"
    readme.write_text("# tiny\n")
    hf_cache_repo(cache, "org/Tiny-GGUF", {"Tiny-Q8_0.gguf": src["q8"], "Tiny-F16.gguf": src["f16"],
                                           "mmproj-tiny-f16.gguf": src["mmproj"], "README.md": readme})
    hf_cache_dir(cache, "org/tiny-embed", src["embed"], revision="b" * 40)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return cache


def test_fixture_is_a_cache_huggingface_hub_reads(hf_cache):
    hub = pytest.importorskip("huggingface_hub")
    info = hub.scan_cache_dir(hf_cache)
    assert not info.warnings
    repos = {r.repo_id: r for r in info.repos}
    assert set(repos) == {"org/Tiny-GGUF", "org/tiny-embed"}
    (rev,) = repos["org/Tiny-GGUF"].revisions
    assert rev.refs == frozenset({"main"}) and len(rev.files) == 4
    assert all(f.file_path.is_symlink() for f in rev.files)


def test_hf_cache_adopted_in_place(run, hf_cache, src):
    dry = as_json(run("scan", "--hf-cache", "--dry-run", "--json"))["entries"]
    assert by_status(dry, "would-add") == ["org/Tiny-GGUF:F16", "org/Tiny-GGUF:Q8_0", "org/tiny-embed"]
    assert models(run) == {}
    entries = as_json(run("scan", "--hf-cache", "--json"))["entries"]  # no DIR: HF_HUB_CACHE
    assert by_status(entries, "added") == ["org/Tiny-GGUF:F16", "org/Tiny-GGUF:Q8_0", "org/tiny-embed"]
    assert [e for e in entries if e["status"] not in ("added",)] == []  # the mmproj is attached, not orphaned
    listed = models(run)
    q8 = listed["org/Tiny-GGUF:Q8_0"]
    snapshot = hf_cache.resolve() / "models--org--Tiny-GGUF" / "snapshots" / ("a" * 40)
    assert q8["path"] == str(snapshot / "Tiny-Q8_0.gguf")
    assert Path(q8["path"]).is_symlink()  # the link is recorded; nothing was copied
    assert q8["provenance"] == {"hub": "huggingface", "repo": "org/Tiny-GGUF", "revision": "a" * 40,
                                "files": ["Tiny-Q8_0.gguf"], "url": "https://huggingface.co/org/Tiny-GGUF"}
    assert q8["sha256"] == sha256_of(src["q8"])  # the LFS blob's name
    assert q8["category"] == "multimodal"
    assert [(c["kind"], c["path"]) for c in q8["components"]] == [("mmproj", str(snapshot / "mmproj-tiny-f16.gguf"))]
    assert q8["facts"]["architecture"] == "llama"
    embed = listed["org/tiny-embed"]
    assert embed["path"] == str(hf_cache.resolve() / "models--org--tiny-embed" / "snapshots" / ("b" * 40))
    assert (embed["category"], embed["format"]) == ("embedding", "hf-dir")
    assert embed["facts"]["embedding_dims"] == 32
    assert embed["provenance"]["revision"] == "b" * 40


def test_hf_cache_snapshot_loads_in_sentence_transformers(run, hf_cache):
    """The adopted snapshot folder (every file a link into blobs/) is what the real library loads."""
    st = pytest.importorskip("sentence_transformers")
    as_json(run("scan", "--hf-cache", "--json"))
    path = models(run)["org/tiny-embed"]["path"]
    vectors = st.SentenceTransformer(path, device="cpu").encode(["hello world", "the model"])
    assert vectors.shape == (2, 32)


def test_hf_cache_rescan_idempotent_and_missing_reported(run, hf_cache):
    as_json(run("scan", "--hf-cache", "--json"))
    again = as_json(run("scan", "--hf-cache", hf_cache, "--json"))["entries"]  # DIR overrides the default
    assert by_status(again, "added") == [] and len(by_status(again, "exists")) == 3
    link = hf_cache / "models--org--Tiny-GGUF" / "snapshots" / ("a" * 40) / "Tiny-F16.gguf"
    target = link.resolve()
    link.unlink()
    gone = as_json(run("scan", "--hf-cache", "--json"))["entries"]
    assert by_status(gone, "missing") == ["org/Tiny-GGUF:F16"]
    assert by_status(gone, "added") == []
    listed = models(run)
    assert listed["org/Tiny-GGUF:F16"]["missing"] is True  # kept, flagged, not dropped
    assert listed["org/Tiny-GGUF:Q8_0"]["missing"] is False
    assert "missing" in run("ls").stdout
    assert "missing" in run("show", "org/Tiny-GGUF:F16").stdout
    link.symlink_to(os.path.relpath(target, link.parent))
    back = as_json(run("scan", "--hf-cache", "--json"))["entries"]
    assert by_status(back, "missing") == []
    assert models(run)["org/Tiny-GGUF:F16"]["missing"] is False


def test_hf_cache_older_revision_and_shared_blob(run, tmp_path, monkeypatch, src):
    """Two revisions of one repo: the one main points at takes the repo's name; a file the two revisions
    share (one blob, two links) is one record with both links."""
    cache = tmp_path / "hub"
    hf_cache_repo(cache, "org/m", {"m.gguf": src["q8"]}, revision="1" * 40, ref=None)
    hf_cache_repo(cache, "org/m", {"m.gguf": src["q8"]}, revision="2" * 40, ref="main")
    entries = as_json(run("scan", "--hf-cache", cache, "--json"))["entries"]
    assert by_status(entries, "added") == ["org/m"]
    assert by_status(entries, "copy") == ["org/m"]
    record = models(run)["org/m"]
    assert record["provenance"]["revision"] == "2" * 40
    assert record["copies"] == [str(cache.resolve() / "models--org--m" / "snapshots" / ("1" * 40) / "m.gguf")]


# --- Ollama ----------------------------------------------------------------------------------------------


@pytest.fixture
def ollama(tmp_path, monkeypatch, src) -> Path:
    root = tmp_path / "ollama" / "models"
    ollama_model(root, "tiny", "latest", src["q8"], projector=src["mmproj"])
    ollama_model(root, "tiny", "q8", src["q8"])  # a second tag of the same blob
    ollama_model(root, "other", "1b", src["other"])
    monkeypatch.setenv("OLLAMA_MODELS", str(root))
    return root


def test_ollama_adopted_by_name_and_tag(run, ollama, src):
    entries = as_json(run("scan", "--ollama", "--json"))["entries"]
    assert by_status(entries, "added") == ["other:1b", "tiny:latest"]
    assert by_status(entries, "exists") == ["tiny:latest"]  # tiny:q8 is the same blob
    listed = models(run)
    tiny = listed["tiny:latest"]
    digest = sha256_of(src["q8"])
    blob = ollama.resolve() / "blobs" / f"sha256-{digest}"
    assert tiny["path"] == str(blob) and tiny["format"] == "gguf"
    assert tiny["sha256"] == digest
    assert tiny["provenance"]["hub"] == "ollama"
    assert (tiny["provenance"]["repo"], tiny["provenance"]["revision"]) == ("tiny", "latest")
    projector = ollama.resolve() / "blobs" / f"sha256-{sha256_of(src['mmproj'])}"
    assert [(c["kind"], c["path"]) for c in tiny["components"]] == [("mmproj", str(projector))]
    assert tiny["category"] == "multimodal"
    assert listed["other:1b"]["category"] == "chat"
    again = as_json(run("scan", "--ollama", "--json"))["entries"]
    assert by_status(again, "added") == [] and by_status(again, "error") == []


def test_ollama_parameters_become_settings_and_adapters_loras(run, tmp_path, monkeypatch, src):
    """`ollama create` with PARAMETER num_ctx … , SYSTEM … and ADAPTER …: the load options and sampling
    defaults become settings, the system message the model's system prompt, a fitting adapter is bound
    as a LoRA, a misfit one is reported."""
    root = tmp_path / "ollama" / "models"
    fits = write_lora_gguf(tmp_path / "src" / "fits.gguf")
    misfit = write_lora_gguf(tmp_path / "src" / "misfit.gguf", n_embd=128, n_head=8, n_head_kv=4)
    params = {"num_ctx": 512, "num_gpu": 0, "num_thread": 2, "use_mmap": False, "seed": 7, "temperature": 0.2,
              "repeat_penalty": 1, "top_k": 20, "num_predict": 128, "stop": ["</s>"], "num_batch": -3,
              "num_keep": "24"}
    ollama_model(root, "tuned", "latest", src["q8"], adapters=[fits], params=params, system="You are a pirate.\n")
    ollama_model(root, "odd", "latest", src["other"], adapters=[misfit],
                 params={"num_ctx": "big", "top_p": 1.5, "num_predict": -1, "temperature": -1,
                         "repeat_penalty": 0}, system="   ")
    monkeypatch.setenv("OLLAMA_MODELS", str(root))
    entries = {e["name"]: e for e in as_json(run("scan", "--ollama", "--json"))["entries"]}
    assert entries["tuned:latest"]["status"] == "added" and not entries["tuned:latest"].get("message")
    assert entries["odd:latest"]["status"] == "added"
    assert "adapter" in entries["odd:latest"]["message"] and "not bound" in entries["odd:latest"]["message"]
    listed = models(run)
    assert listed["tuned:latest"]["settings"] == {
        "n_ctx": 512, "n_gpu_layers": 0, "threads": 2, "use_mmap": False, "seed": 7,
        "temperature": 0.2, "repeat_penalty": 1.0, "top_k": 20, "max_tokens": 128,
        "system_prompt": "You are a pirate."}
    assert listed["odd:latest"]["settings"] == {}  # a wrong type or range gives no setting, a blank system none
    loras = as_json(run("lora", "ls", "tuned:latest", "--json"))
    assert [(lora["name"], lora["path"]) for lora in loras] == [
        ("tuned:latest-adapter", str(root.resolve() / "blobs" / f"sha256-{sha256_of(fits)}"))]
    assert as_json(run("lora", "ls", "odd:latest", "--json")) == []


def test_ollama_blob_loads_in_llama_cpp(run, ollama):
    """The adopted blob (no .gguf suffix, Ollama's name) is what llama.cpp loads, in place."""
    llama_cpp = pytest.importorskip("llama_cpp")
    as_json(run("scan", "--ollama", "--json"))
    path = models(run)["other:1b"]["path"]
    llm = llama_cpp.Llama(model_path=path, n_ctx=64, n_threads=1, verbose=False)
    try:
        out = llm("hello", max_tokens=2, temperature=0.0)
        assert out["usage"]["prompt_tokens"] > 0
    finally:
        llm.close()


def test_ollama_broken_entries_reported_not_fatal(run, ollama, src):
    manifests = ollama / "manifests" / "registry.ollama.ai" / "library"
    (manifests / "cloudy").mkdir()
    (manifests / "cloudy" / "big").write_text(json.dumps({"layers": [
        {"mediaType": "application/vnd.ollama.image.template", "digest": "sha256:" + "0" * 64}]}))
    (manifests / "evil").mkdir()
    (manifests / "evil" / "x").write_text(json.dumps({"layers": [
        {"mediaType": "application/vnd.ollama.image.model", "digest": "sha256:../../../../etc/passwd"}]}))
    (manifests / "junk").mkdir()
    (manifests / "junk" / "1").write_text("{not json")
    gone = ollama_model(ollama, "gone", "1", write_tiny_gguf(src["q8"].parent / "gone.gguf", seed=9))
    gone.unlink()
    entries = as_json(run("scan", "--ollama", "--json"))["entries"]
    errors = {e["name"]: e["message"] for e in entries if e["status"] == "error"}
    assert set(errors) == {"cloudy:big", "evil:x", "junk:1", "gone:1"}
    assert "no model layer" in errors["cloudy:big"]
    assert "not a sha256 digest" in errors["evil:x"]
    assert "ollama pull gone:1" in errors["gone:1"]
    assert by_status(entries, "added") == ["other:1b", "tiny:latest"]


def test_ollama_removed_blob_shows_missing(run, ollama, src):
    as_json(run("scan", "--ollama", "--json"))
    blob = Path(models(run)["other:1b"]["path"])
    blob.unlink()
    entries = as_json(run("scan", "--ollama", "--json"))["entries"]
    assert by_status(entries, "missing") == ["other:1b"]
    assert models(run)["other:1b"]["missing"] is True


def test_ollama_folder_without_manifests(run, tmp_path):
    (tmp_path / "nothing").mkdir()
    assert_clean_error(run("scan", "--ollama", tmp_path / "nothing"), "not an Ollama models folder")


def test_default_location_missing_is_a_clean_error(run, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("OLLAMA_MODELS", raising=False)
    monkeypatch.setattr("corral.adopt.ollama.default_roots", lambda: [tmp_path / "home" / ".ollama" / "models"])
    assert_clean_error(run("scan", "--ollama"), ".ollama/models", "corral scan DIR --ollama")
    assert_clean_error(run("scan"), "give a folder to scan")


# --- LM Studio and any folder -------------------------------------------------------------------------


def test_lmstudio_publisher_model_folders(run, tmp_path, monkeypatch, src):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    root = tmp_path / "home" / ".lmstudio" / "models"
    lmstudio_model(root, "lmstudio-community", "Tiny-GGUF",
                   {"Tiny-Q8_0.gguf": src["q8"], "Tiny-F16.gguf": src["f16"], "mmproj-tiny-f16.gguf": src["mmproj"]})
    shutil.copytree(src["embed"], root / "mlx-community" / "tiny-embed")
    entries = as_json(run("scan", "--lmstudio", "--json"))["entries"]  # default: ~/.lmstudio/models
    assert by_status(entries, "added") == [
        "lmstudio-community/Tiny-GGUF:F16", "lmstudio-community/Tiny-GGUF:Q8_0", "mlx-community/tiny-embed"]
    assert by_status(entries, "component") == []
    listed = models(run)
    q8 = listed["lmstudio-community/Tiny-GGUF:Q8_0"]
    assert q8["category"] == "multimodal" and q8["components"][0]["kind"] == "mmproj"
    assert q8["provenance"]["hub"] == "lmstudio"
    assert q8["provenance"]["repo"] == "lmstudio-community/Tiny-GGUF"
    assert q8["provenance"]["files"] == ["Tiny-Q8_0.gguf"]
    assert listed["mlx-community/tiny-embed"]["category"] == "embedding"
    assert by_status(as_json(run("scan", "--lmstudio", "--json"))["entries"], "added") == []


def test_text_generation_webui_models_folder(run, tmp_path, src):
    root = tmp_path / "text-generation-webui" / "models"
    root.mkdir(parents=True)
    shutil.copyfile(src["other"], root / "tinyllama.Q4_K_M.gguf")
    shutil.copytree(src["embed"], root / "intfloat_tiny-embed")
    (root / "config.yaml").write_text("# webui settings\n")
    (root / "place-your-models-here.txt").write_text("")
    entries = as_json(run("scan", root, "--json"))["entries"]
    assert by_status(entries, "added") == ["intfloat_tiny-embed", "tinyllama.Q4_K_M"]
    assert by_status(as_json(run("scan", root, "--json"))["entries"], "added") == []


def test_same_file_twice_is_one_record_with_both_paths(run, tmp_path, src):
    first, second = tmp_path / "a" / "tiny.gguf", tmp_path / "b" / "tiny-copy.gguf"
    for p in (first, second):
        p.parent.mkdir(parents=True)
        shutil.copyfile(src["q8"], p)
    lookalike = tmp_path / "b" / "same-size-other-weights.gguf"
    shutil.copyfile(src["f16"], lookalike)  # same size, different content: its own record
    assert lookalike.stat().st_size == first.stat().st_size
    assert by_status(as_json(run("scan", tmp_path / "a", "--json"))["entries"], "added") == ["tiny"]
    entries = as_json(run("scan", tmp_path / "b", "--json"))["entries"]
    assert by_status(entries, "copy") == ["tiny"]
    assert by_status(entries, "added") == ["same-size-other-weights"]
    record = models(run)["tiny"]
    assert record["copies"] == [str(second.resolve())]
    assert record["sha256"] == sha256_of(src["q8"])
    assert "copy" in run("show", "tiny").stdout
    assert by_status(as_json(run("scan", tmp_path / "b", "--json"))["entries"], "copy") == []  # known now
    # The same bytes with a projector beside them play another part: a multimodal model of their own.
    (tmp_path / "c").mkdir()
    shutil.copyfile(src["q8"], tmp_path / "c" / "vision.gguf")
    shutil.copyfile(src["mmproj"], tmp_path / "c" / "mmproj-vision.gguf")
    vision = as_json(run("scan", tmp_path / "c", "--json"))["entries"]
    assert [(e["status"], e["name"], e["category"]) for e in vision] == [("added", "vision", "multimodal")]
    first.unlink()
    moved = as_json(run("scan", tmp_path / "a", "--json"))["entries"]
    assert by_status(moved, "moved") == ["tiny"]
    record = models(run)["tiny"]
    assert record["path"] == str(second.resolve()) and record["copies"] == [] and record["missing"] is False


def test_bound_lora_and_attached_parts_are_not_reported_again(run, tmp_path, src):
    root = tmp_path / "m"
    model = root / "chat.gguf"
    root.mkdir()
    shutil.copyfile(src["other"], model)
    lora = write_lora_gguf(root / "style.gguf")
    as_json(run("scan", root, "--json"))
    as_json(run("lora", "add", "chat", lora, "--json"))
    entries = as_json(run("scan", root, "--json"))["entries"]
    assert sorted((e["status"], e["name"]) for e in entries) == [("exists", "chat"), ("exists", "style")]


def test_hf_cache_sharded_model(run, tmp_path):
    """A sharded checkpoint's index names shards that link into blobs/: the names stay inside the
    snapshot, so it is adopted; a name climbing out of the folder is still refused."""
    from factories_weights import write_llm_dir

    folder = write_llm_dir(tmp_path / "llm")
    (folder / "model.safetensors").rename(folder / "model-00001-of-00001.safetensors")
    index = {"metadata": {}, "weight_map": {"model.embed_tokens.weight": "model-00001-of-00001.safetensors"}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    cache = tmp_path / "hub"
    hf_cache_dir(cache, "org/llm", folder)
    entries = as_json(run("scan", "--hf-cache", cache, "--json"))["entries"]
    assert [(e["status"], e["name"], e["category"]) for e in entries] == [("added", "org/llm", "text-generation")]
    evil = {"weight_map": {"x": "../../../../secret.safetensors"}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(evil))
    hf_cache_dir(cache, "org/evil", folder, revision="e" * 40)
    entries = as_json(run("scan", "--hf-cache", cache, "--json"))["entries"]
    assert [e["message"] for e in entries if e["status"] == "error"] == [
        f"{cache.resolve() / 'models--org--evil' / 'snapshots' / ('e' * 40)}: weight file name "
        "'../../../../secret.safetensors' points outside the model folder"]
