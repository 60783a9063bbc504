"""The Hugging Face source against the fake hub (tests/fakehub), with the real huggingface_hub client:
search and listing through ``HfApi``, the shared cache in both directions, HF_TOKEN, branches, links,
HF_HUB_OFFLINE and clear errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from fakehub import CHAT, EMBED, MMPROJ, PRIVATE, Q8, TOKEN
from fakehub.fixtures import corral, hub, one_error_line  # noqa: F401


def snapshot_dir(corral, commit: str) -> Path:
    return corral.hf_cache / "models--corral-test--tiny-chat-GGUF" / "snapshots" / commit


def test_search_filters_by_category_and_shows_counts(corral):
    hits = corral.json("search", "tiny", "--category", "embedding")
    assert [h["repo"] for h in hits] == [EMBED]
    assert hits[0]["downloads"] == 900 and hits[0]["likes"] == 30 and hits[0]["size_bytes"] > 100_000
    assert hits[0]["category"] == "embedding"
    everything = [h["repo"] for h in corral.json("search", "tiny")]
    assert everything[0] == CHAT and EMBED in everything and PRIVATE not in everything  # by downloads
    text = corral.ok("search", "tiny", "--category", "multimodal").stdout
    assert "REPO" in text and "DOWNLOADS" in text and CHAT in text and "1.2K" in text


def test_pull_fills_the_hugging_face_cache_for_other_tools(corral, hub):
    corral.ok("pull", CHAT, "--quant", "Q8_0")
    commit = hub.repo(CHAT).refs["main"]
    entry = snapshot_dir(corral, commit) / Q8
    assert entry.is_symlink() and os.readlink(entry) == f"../../blobs/{hub.entry(CHAT, Q8).sha256}"
    assert (corral.hf_cache / "models--corral-test--tiny-chat-GGUF" / "refs" / "main").read_text() == commit
    served = hub.bytes_served()
    found = corral.python(
        "from huggingface_hub import hf_hub_download, scan_cache_dir\n"
        f"print(hf_hub_download({CHAT!r}, {Q8!r}, local_files_only=True))\n"
        f"print(hf_hub_download({CHAT!r}, {MMPROJ!r}))\n"  # online: a HEAD, no body
        "print(sorted(r.repo_id for r in scan_cache_dir().repos))\n"
    ).split("\n")
    assert found[0] == str(entry) and found[1] == str(snapshot_dir(corral, commit) / MMPROJ)
    assert found[2] == f"[{CHAT!r}]"
    assert hub.bytes_served() == served


def test_files_other_tools_downloaded_are_reused(corral, hub):
    corral.python(f"from huggingface_hub import hf_hub_download; hf_hub_download({CHAT!r}, {Q8!r})")
    assert hub.bytes_served(CHAT, Q8) == hub.entry(CHAT, Q8).size
    result = corral.json("pull", CHAT, "--quant", "Q8_0")
    assert result["reused"] == [Q8] and result["fetched"] == hub.entry(CHAT, MMPROJ).size
    assert hub.bytes_served(CHAT, Q8) == hub.entry(CHAT, Q8).size  # not one byte more
    (model,) = result["models"]
    # Recorded through the snapshot's link, so its name (and its projector beside it) stay meaningful.
    assert model["path"] == str(snapshot_dir(corral, hub.repo(CHAT).refs["main"]) / Q8)
    assert model["category"] == "multimodal" and model["facts"]["quantization"] == "Q8_0"


def test_private_repo_needs_hf_token(corral, hub):
    one_error_line(corral("files", PRIVATE), PRIVATE, "HF_TOKEN")
    listing = corral.json("files", PRIVATE, env={"HF_TOKEN": TOKEN})
    assert "model.safetensors" in [f["name"] for f in listing["files"]]
    (model,) = corral.json("pull", PRIVATE, env={"HF_TOKEN": TOKEN})["models"]
    assert model["category"] == "embedding" and model["provenance"]["repo"] == PRIVATE


def test_branch_is_pinned_to_its_commit(corral, hub):
    dev = hub.repo(CHAT).refs["dev"]
    listing = corral.json("files", f"{CHAT}:dev")
    assert listing["commit"] == dev and "NOTES.md" in [f["name"] for f in listing["files"]]
    assert "NOTES.md" not in [f["name"] for f in corral.json("files", CHAT)["files"]]
    (model,) = corral.json("pull", f"{CHAT}:dev", "--quant", "Q8_0")["models"]
    assert model["provenance"]["revision"] == dev
    assert (corral.hf_cache / "models--corral-test--tiny-chat-GGUF" / "refs" / "dev").read_text() == dev


def test_link_to_one_file_on_the_configured_endpoint(corral, hub):
    result = corral.json("pull", f"{hub.url}/{CHAT}/blob/main/{Q8}")
    assert sorted(result["files"]) == sorted([Q8, MMPROJ])
    assert result["models"][0]["provenance"]["url"] == f"{hub.url}/{CHAT}"


def test_offline_uses_the_cache_only(corral, hub):
    corral.ok("pull", CHAT, "--quant", "Q8_0")
    hub.reset()
    offline = {"HF_HUB_OFFLINE": "1"}
    names = [f["name"] for f in corral.json("files", CHAT, env=offline)["files"]]
    assert sorted(names) == sorted([Q8, MMPROJ])
    again = corral.json("pull", CHAT, "--quant", "Q8_0", env=offline)
    assert again["fetched"] == 0 and again["existing"]
    assert hub.state.requests == []  # not one request reached the hub
    one_error_line(corral("pull", EMBED, "--offline"), "offline", "not in the Hugging Face cache")


def test_unknown_repo_revision_and_endpoint_are_clear_errors(corral):
    one_error_line(corral("files", "corral-test/nope"), "no such repository")
    one_error_line(corral("files", f"{CHAT}:no-such-branch"), "no revision 'no-such-branch'")
    one_error_line(corral("files", CHAT, env={"HF_ENDPOINT": "http://127.0.0.1:9"}), "cannot reach Hugging Face")


def test_registering_the_plugin_imports_no_hub_client():
    code = (
        "import sys, corral_huggingface\n"
        "from corral.testing import build_host\n"
        "host = build_host()\n"
        "assert host.source('huggingface') is corral_huggingface.HuggingFaceSource\n"
        "print('huggingface_hub' in sys.modules)\n"
    )
    env = {**os.environ, "CORRAL_LOAD_PLUGINS": "huggingface"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
