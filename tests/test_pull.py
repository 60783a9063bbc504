"""Pulling models from hubs, end to end: the real ``corral`` CLI with the real huggingface_hub and
modelscope clients against a local fake hub (tests/fakehub). What the hub serves is counted byte by
byte, so resuming is shown by what is *not* sent again.

Also the pure parts of :mod:`corral.pull`: references, name safety, GGUF variants, file selection.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from corral.errors import CorralError, IntegrityError, NoSpace, NotFound, PluginMissing
from corral.pull import download, gguf_variants, parse_ref, select_files
from corral.pull.names import check_names, inside, unsafe_reason
from corral.pull.errors import UnsafeName
from corral.records import RemoteFile, Snapshot
from fakehub import CHAT, EMBED, F16_PARTS, HOSTILE, HUGE, LORA, MMPROJ, Q8
from fakehub.fixtures import Corral, corral, hub, one_error_line, sha256, wait_for  # noqa: F401

pytest.importorskip("corral_huggingface")
pytest.importorskip("corral_modelscope")

SOURCES = ["huggingface", "modelscope"]


def library(corral: Corral) -> list[dict]:
    return corral.json("ls")


# --- references, names, variants (no network) -----------------------------------------------------------


def test_refs_repo_branch_and_links(monkeypatch):
    from corral_huggingface import HuggingFaceSource
    from corral_modelscope import ModelScopeSource

    sources = [HuggingFaceSource, ModelScopeSource]
    assert parse_ref("org/model", sources).repo == "org/model"
    assert parse_ref("org/model:dev", sources).revision == "dev"
    assert parse_ref("org/model", sources, "modelscope").source == "modelscope"
    link = parse_ref("https://huggingface.co/org/m-GGUF/blob/main/m-Q4_K_M.gguf", sources)
    assert (link.source, link.repo, link.revision, link.files) == ("huggingface", "org/m-GGUF", "main", ("m-Q4_K_M.gguf",))
    tree = parse_ref("https://huggingface.co/org/m/tree/refs%2Fpr%2F1", sources)
    assert (tree.repo, tree.revision) == ("org/m", "refs/pr/1")
    ms = parse_ref("https://www.modelscope.cn/models/Qwen/Qwen3-0.6B-GGUF/file/view/master/Qwen3-Q8_0.gguf", sources)
    assert (ms.source, ms.repo, ms.revision, ms.files) == ("modelscope", "Qwen/Qwen3-0.6B-GGUF", "master", ("Qwen3-Q8_0.gguf",))
    assert parse_ref("https://modelscope.cn/models/Qwen/Qwen3-0.6B/files", sources).repo == "Qwen/Qwen3-0.6B"
    monkeypatch.setenv("HF_ENDPOINT", "http://mirror.local:8080")
    assert parse_ref("http://mirror.local:8080/org/m", sources).source == "huggingface"
    with pytest.raises(CorralError, match="modelscope link"):
        parse_ref("https://modelscope.cn/models/a/b", sources, "huggingface")


def test_refs_refuse_what_is_not_a_repo():
    with pytest.raises(PluginMissing, match="pip install corral-huggingface"):
        parse_ref("https://huggingface.co/org/model", [])
    for bad in ("model", "org/../etc", "/etc/passwd", "org/model/extra", "https://example.com/a/b"):
        with pytest.raises(CorralError):
            parse_ref(bad, [])


@pytest.mark.parametrize("name", ["../x", "/etc/x", "a/../../b", "C:evil", "a\\b", "", "a//b", "./x", "x\x00y"])
def test_unsafe_names_are_named(name, tmp_path):
    assert unsafe_reason(name) is not None
    with pytest.raises(UnsafeName):
        check_names(["ok.gguf", name], "org/repo")
    with pytest.raises(UnsafeName):
        inside(tmp_path, name)


def test_safe_names_stay_inside(tmp_path):
    assert unsafe_reason("sub/dir/model.Q4_K_M.gguf") is None
    assert inside(tmp_path, "sub/model.gguf") == tmp_path / "sub" / "model.gguf"
    (tmp_path / "link").symlink_to("/etc")
    with pytest.raises(UnsafeName, match="outside"):
        inside(tmp_path, "link/passwd")


def _snapshot(*names: str) -> Snapshot:
    return Snapshot(source="hub", repo="org/m", files=tuple(RemoteFile(n, size=100 + i) for i, n in enumerate(names)))


def test_gguf_variants_group_quants_splits_and_projectors():
    snap = _snapshot("README.md", "m-Q4_K_M.gguf", "m-Q8_0-00001-of-00002.gguf", "m-Q8_0-00002-of-00002.gguf",
                     "mmproj-m-f16.gguf", "mmproj-m-F32.gguf", "Q2_K/m-Q2_K-00001-of-00001.gguf")  # fmt: skip
    variants = {(v.quant, v.mmproj): v for v in gguf_variants(snap.files)}
    assert set(variants) == {("Q4_K_M", False), ("Q8_0", False), ("Q2_K", False), ("F16", True), ("F32", True)}
    q8 = variants[("Q8_0", False)]
    assert q8.split and q8.files == ("m-Q8_0-00001-of-00002.gguf", "m-Q8_0-00002-of-00002.gguf")
    assert q8.size == 102 + 103


def test_selection_rules():
    snap = _snapshot("README.md", "m-Q4_K_M.gguf", "m-Q8_0.gguf", "mmproj-m-F32.gguf", "mmproj-m-f16.gguf")
    names = lambda files: [f.name for f in files]  # noqa: E731
    with pytest.raises(CorralError, match="--quant"):
        select_files(snap)
    assert names(select_files(snap, quant="q8_0")) == ["m-Q8_0.gguf", "mmproj-m-f16.gguf"]
    assert names(select_files(snap, quant="Q8_0", mmproj=False)) == ["m-Q8_0.gguf"]
    assert names(select_files(snap, names=["README.md"])) == ["README.md"]
    assert len(select_files(snap, everything=True)) == 5
    with pytest.raises(NotFound, match="Q4_K_M, Q8_0"):
        select_files(snap, quant="Q5_K_M")
    with pytest.raises(NotFound, match="no file"):
        select_files(snap, names=["nope.gguf"])


# --- pulls end to end ------------------------------------------------------------------------------------


@pytest.mark.parametrize("source", SOURCES)
def test_pull_gguf_brings_projector_and_records_provenance(corral, hub, source):
    out = corral.ok("pull", CHAT, "--quant", "Q8_0", "--source", source)
    assert "Added corral-test/tiny-chat-GGUF:Q8_0 (multimodal, gguf, mmproj" in out.stdout
    (model,) = library(corral)
    assert model["category"] == "multimodal" and model["facts"]["quantization"] == "Q8_0"
    assert sha256(model["path"]) == hub.entry(CHAT, Q8).sha256
    (component,) = model["components"]
    assert component["kind"] == "mmproj" and Path(component["path"]).name == MMPROJ
    prov = model["provenance"]
    assert (prov["hub"], prov["repo"], sorted(prov["files"])) == (source, CHAT, sorted([Q8, MMPROJ]))
    commit = hub.repo(CHAT).refs["main"]
    assert prov["revision"] == (commit if source == "huggingface" else "master")
    assert hub.bytes_served(CHAT) == hub.entry(CHAT, Q8).size + hub.entry(CHAT, MMPROJ).size
    assert not list(Path(model["path"]).parent.glob("*.part*"))


@pytest.mark.parametrize("source", SOURCES)
def test_pull_again_fetches_nothing(corral, hub, source):
    corral.ok("pull", CHAT, "--quant", "Q8_0", "--source", source)
    served = hub.bytes_served()
    again = corral.json("pull", CHAT, "--quant", "Q8_0", "--source", source)
    assert again["fetched"] == 0 and sorted(again["reused"]) == sorted([Q8, MMPROJ])
    assert [m["name"] for m in again["existing"]] == ["corral-test/tiny-chat-GGUF:Q8_0"]
    assert hub.bytes_served() == served
    assert len(library(corral)) == 1


def test_split_gguf_is_one_variant_and_one_model(corral, hub):
    result = corral.json("pull", CHAT, "--quant", "F16", "--no-mmproj")
    assert sorted(result["files"]) == sorted(F16_PARTS)
    (model,) = result["models"]
    assert Path(model["path"]).name == F16_PARTS[0]
    assert [Path(p).name for p in model["paths"]] == list(F16_PARTS)
    assert model["category"] == "chat" and model["facts"]["quantization"] == "F16"


def test_several_quantizations_ask_for_a_choice(corral, hub):
    one_error_line(corral("pull", CHAT), "2 GGUF quantizations", "Q8_0", "F16", "--quant")
    assert hub.bytes_served() == 0


def test_files_groups_quantizations_and_marks_projectors(corral):
    listing = corral.json("files", CHAT)
    by_quant = {v["quant"]: v for v in listing["variants"] if not v["mmproj"]}
    assert by_quant["F16"]["split"] and list(by_quant["F16"]["files"]) == list(F16_PARTS)
    assert by_quant["Q8_0"]["files"] == [Q8] and not by_quant["Q8_0"]["split"]
    assert [v["files"] for v in listing["variants"] if v["mmproj"]] == [[MMPROJ]]
    text = corral.ok("files", CHAT).stdout
    assert "+1 more parts" in text and "mmproj F16" in text


def test_embedding_repo_lands_as_a_model_folder(corral, hub, tmp_path):
    dest = tmp_path / "models" / "embed"
    (model,) = corral.json("pull", EMBED, "--dest", dest)["models"]
    assert (model["name"], model["category"], model["format"]) == ("corral-test/tiny-embed", "embedding", "hf-dir")
    assert Path(model["path"]) == dest.resolve()
    for name, entry in hub.repo(EMBED).commits[hub.repo(EMBED).refs["main"]].items():
        assert sha256(dest / name) == entry.sha256


# --- resuming ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("source", SOURCES)
def test_dropped_connection_resumes_in_the_same_run(corral, hub, source):
    size = hub.entry(CHAT, Q8).size
    hub.cut(CHAT, Q8, at=size // 2, times=1)
    corral.ok("pull", CHAT, "--quant", "Q8_0", "--source", source)
    assert hub.bodies(CHAT, Q8) == [(0, size // 2), (size // 2, size - size // 2)]
    (model,) = library(corral)
    assert sha256(model["path"]) == hub.entry(CHAT, Q8).sha256


@pytest.mark.parametrize("source", SOURCES)
def test_connection_that_keeps_dropping_resumes_on_the_next_run(corral, hub, source):
    size, cut = hub.entry(CHAT, Q8).size, 1_000_000
    hub.cut(CHAT, Q8, at=cut)
    failed = corral("pull", CHAT, "--quant", "Q8_0", "--source", source)
    one_error_line(failed, Q8, "run the same command again to resume")
    assert library(corral) == []
    projector_bytes = hub.bytes_served(CHAT, MMPROJ)
    assert projector_bytes == hub.entry(CHAT, MMPROJ).size  # finished before the cut file started
    hub.uncut(CHAT, Q8)
    hub.state.served.clear()

    result = corral.json("pull", CHAT, "--quant", "Q8_0", "--source", source)
    assert hub.bodies(CHAT, Q8) == [(cut, size - cut)]  # only the missing bytes
    assert hub.bytes_served(CHAT, MMPROJ) == 0  # the finished file is not fetched again
    assert result["resumed"] == [Q8] and result["reused"] == [MMPROJ]
    assert sha256(result["models"][0]["path"]) == hub.entry(CHAT, Q8).sha256


def _stalled_pull(corral, hub, source: str, sig: int):
    """Start a pull, let the hub stop mid-file, deliver ``sig`` to the client; return (process, part)."""
    at = 1_200_000
    stall = hub.stall(CHAT, Q8, at=at)
    proc = corral.popen("pull", CHAT, "--quant", "Q8_0", "--no-mmproj", "--source", source)
    assert stall.reached.wait(60), proc.communicate()
    parts = lambda: list(corral.home.rglob("*.part"))  # noqa: E731 - named by sha256 in the HF cache
    wait_for(lambda: parts() and parts()[0].stat().st_size >= at - 64 * 1024)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    hub.unstall(CHAT, Q8)
    (part,) = parts()
    return proc, part, err


@pytest.mark.parametrize("source", SOURCES)
def test_killed_client_resumes_from_its_partial_file(corral, hub, source):
    proc, part, _ = _stalled_pull(corral, hub, source, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL
    kept = part.stat().st_size
    assert kept > 1_000_000
    hub.state.served.clear()
    result = corral.json("pull", CHAT, "--quant", "Q8_0", "--no-mmproj", "--source", source)
    size = hub.entry(CHAT, Q8).size
    assert hub.bodies(CHAT, Q8) == [(kept, size - kept)]
    assert result["fetched"] == size - kept
    assert sha256(result["models"][0]["path"]) == hub.entry(CHAT, Q8).sha256
    assert not part.exists()


def test_ctrl_c_pauses_and_the_same_command_resumes(corral, hub):
    proc, part, err = _stalled_pull(corral, hub, "huggingface", signal.SIGINT)
    assert proc.returncode == 130
    assert "Paused after 0 of 1 files" in err and "Run the same command again to resume" in err
    assert "Traceback" not in err
    kept = part.stat().st_size
    hub.state.served.clear()
    corral.ok("pull", CHAT, "--quant", "Q8_0", "--no-mmproj")
    assert hub.bodies(CHAT, Q8) == [(kept, hub.entry(CHAT, Q8).size - kept)]


def test_two_pulls_of_one_file_never_write_it_together(corral, hub):
    stall = hub.stall(CHAT, Q8, at=500_000)
    first = corral.popen("pull", CHAT, "--quant", "Q8_0", "--no-mmproj")
    assert stall.reached.wait(60)
    one_error_line(corral("pull", CHAT, "--quant", "Q8_0", "--no-mmproj"), "another corral pull is downloading")
    hub.unstall(CHAT, Q8)
    out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    (model,) = library(corral)
    assert sha256(model["path"]) == hub.entry(CHAT, Q8).sha256


def test_partial_data_of_another_version_is_not_mixed_in(corral, hub, tmp_path):
    """A .part whose record names another sha256 is started over (with a note), never continued."""
    dest = tmp_path / "d"
    part = dest / f"{Q8}.part"
    dest.mkdir()
    part.write_bytes(b"\0" * 500_000)
    (dest / f"{Q8}.part.json").write_text(json.dumps({"name": Q8, "size": 1, "sha256": "f" * 64, "version": None}))
    out = corral.ok("pull", CHAT, "--quant", "Q8_0", "--no-mmproj", "--dest", dest)
    assert "another version" in out.stderr
    assert hub.bodies(CHAT, Q8) == [(0, hub.entry(CHAT, Q8).size)]
    assert sha256(dest / Q8) == hub.entry(CHAT, Q8).sha256


# --- refusals ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("source", SOURCES)
def test_wrong_sha256_is_refused_and_nothing_registered(corral, hub, source, tmp_path):
    hub.bad_sha(CHAT, Q8)
    dest = tmp_path / "dest"
    failed = corral("pull", CHAT, "--quant", "Q8_0", "--no-mmproj", "--source", source, "--dest", dest)
    one_error_line(failed, Q8, "sha256", "does not match", "nothing was added")
    assert failed.returncode == IntegrityError.exit_code
    assert library(corral) == []
    assert not (dest / Q8).exists() and not list(dest.glob("*.part*"))
    assert hub.bytes_served(CHAT, Q8) == hub.entry(CHAT, Q8).size  # it was fetched, then refused


@pytest.mark.parametrize("source", SOURCES)
def test_hostile_file_list_writes_nothing_outside_the_destination(corral, hub, source, tmp_path):
    base = tmp_path / "inside"
    dest = base / "dest"
    failed = corral("pull", HOSTILE, "--source", source, "--dest", dest)
    one_error_line(failed, "unsafe file names", "'../x'", "'/etc/x'")
    assert failed.returncode == UnsafeName.exit_code
    assert hub.bytes_served() == 0
    assert not (base / "x").exists() and not Path("/etc/x").exists()
    assert not dest.exists() or not any(dest.iterdir())
    notes = {f["name"]: f["unsafe"] for f in corral.json("files", HOSTILE, "--source", source)["files"]}
    assert notes["../x"] and notes["/etc/x"] and notes["model-Q8_0.gguf"] is None
    # The safe file alone can still be pulled; the hostile ones are never written.
    corral.ok("pull", HOSTILE, "--file", "model-Q8_0.gguf", "--source", source, "--dest", dest)
    assert sorted(p.name for p in dest.iterdir()) == ["model-Q8_0.gguf"]
    assert not (base / "x").exists()


def test_free_disk_space_is_checked_before_any_byte(corral, hub):
    failed = corral("pull", HUGE)
    one_error_line(failed, "not enough disk space", "10.0 TB")
    assert failed.returncode == NoSpace.exit_code
    assert hub.bytes_served() == 0


# --- LoRAs ---------------------------------------------------------------------------------------------------


def test_lora_is_offered_then_bound_with_provenance(corral, hub):
    corral.ok("pull", CHAT, "--quant", "Q8_0")
    offered = corral.ok("pull", LORA)
    assert "is a LoRA adapter for llama" in offered.stdout and "corral lora add BASE" in offered.stdout
    assert "corral-test/tiny-chat-GGUF:Q8_0" in offered.stdout  # the base in the library that fits
    bound = corral.json("pull", LORA, "--base", "corral-test/tiny-chat-GGUF:Q8_0")
    (lora,) = bound["loras"]
    assert lora["provenance"]["repo"] == LORA and lora["provenance"]["hub"] == "huggingface"
    listed = json.loads(corral.ok("lora", "ls", "corral-test/tiny-chat-GGUF:Q8_0", "--json").stdout)
    assert [entry["name"] for entry in listed] == [lora["name"]]
    assert hub.bytes_served(LORA) == hub.entry(LORA, "tiny-chat-lora.gguf").size  # fetched once


def test_missing_hub_plugin_is_named(corral):
    one_error_line(corral("pull", "org/model", "--source", "nohub"), "nohub")
    result = corral("search", "x", env={"CORRAL_DISABLE_PLUGINS": "modelscope"}, timeout=60)
    assert result.returncode == 0
    one_error_line(corral("files", "org/m", "--source", "modelscope", env={"CORRAL_DISABLE_PLUGINS": "modelscope"}),
                   "pip install corral-modelscope")  # fmt: skip


# --- the Python API ------------------------------------------------------------------------------------------


def test_source_download_reads_the_environment_at_call_time(hub, tmp_path, monkeypatch):
    """``Source.download`` (the shared fetcher) in this process; HF_ENDPOINT is set after import."""
    from corral_huggingface import HuggingFaceSource

    hub.reset()
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    source = HuggingFaceSource()
    snap = source.snapshot(CHAT)
    wanted = [f for f in snap.files if f.name == Q8]
    seen = []
    paths = download(source, CHAT, wanted, revision=snap.commit, dest=tmp_path / "d",
                            progress=lambda done, total, label: seen.append((done, total, label)))  # fmt: skip
    assert paths == [(tmp_path / "d" / Q8).resolve()]
    assert sha256(paths[0]) == hub.entry(CHAT, Q8).sha256
    size = hub.entry(CHAT, Q8).size
    assert seen[-1] == (size, size, Q8)


@pytest.mark.slow
def test_pull_the_real_gemma_gguf(gemma_path, tmp_path):
    """The real Gemma 3 270M Q4_K_M GGUF (253 MB) through the hub: detected as it is, with provenance."""
    import os

    from fakehub import FakeHub
    from fakehub.fixtures import Corral
    from fakehub.repos import file_repo

    repo = "google-test/gemma-3-270m-GGUF"
    repos = {repo: file_repo(repo, {gemma_path.name: gemma_path}, tmp_path / "store")}
    with FakeHub.start(tmp_path, repos) as gemma_hub:
        home = tmp_path / "home"
        home.mkdir()
        corral = Corral(gemma_hub.env(dict(os.environ), home=home), home)
        (model,) = corral.json("pull", repo)["models"]
        assert gemma_hub.bytes_served() == gemma_path.stat().st_size
    assert (model["facts"]["architecture"], model["facts"]["quantization"]) == ("gemma3", "Q4_K_M")
    assert model["provenance"]["files"] == [gemma_path.name]
    assert sha256(model["path"]) == sha256(gemma_path)
