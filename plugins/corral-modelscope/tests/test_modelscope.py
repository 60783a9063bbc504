"""The ModelScope source against the fake hub (tests/fakehub), with the real modelscope client: search
with task filters, listings, the client's download folder shared in both directions, MODELSCOPE_API_TOKEN,
MODELSCOPE_DOMAIN, offline pulls and clear errors."""

from __future__ import annotations

import os
import subprocess
import sys

from fakehub import CHAT, EMBED, MMPROJ, PRIVATE, Q8, TOKEN
from fakehub.fixtures import corral, hub, one_error_line  # noqa: F401

MS = ("--source", "modelscope")


def client_download(corral, name: str, env=None) -> str:
    """Fetch one file with the modelscope client itself; its local path."""
    code = f"from modelscope.hub.file_download import model_file_download\nprint(model_file_download({CHAT!r}, {name!r}))"
    return corral.python(code, env=env).strip().splitlines()[-1]


def test_search_uses_modelscope_tasks(corral):
    hits = corral.json("search", "tiny", *MS, "--category", "embedding")
    assert [h["repo"] for h in hits] == [EMBED]
    assert (hits[0]["source"], hits[0]["downloads"], hits[0]["likes"]) == ("modelscope", 900, 30)
    assert hits[0]["size_bytes"] > 100_000 and hits[0]["category"] == "embedding"
    assert [h["repo"] for h in corral.json("search", "tiny", *MS, "--category", "multimodal")] == [CHAT]
    assert PRIVATE not in [h["repo"] for h in corral.json("search", "embed", *MS)]


def test_files_at_a_branch(corral):
    listing = corral.json("files", f"{CHAT}:dev", *MS)
    assert listing["revision"] == "dev" and "NOTES.md" in [f["name"] for f in listing["files"]]
    q8 = next(f for f in listing["files"] if f["name"] == Q8)
    assert q8["quant"] == "Q8_0" and len(q8["sha256"]) == 64


def test_pull_lands_where_the_modelscope_client_finds_it(corral, hub):
    (model,) = corral.json("pull", CHAT, "--quant", "Q8_0", *MS)["models"]
    folder = corral.ms_cache / "models" / "corral-test--tiny-chat-GGUF" / "snapshots" / "master"
    assert model["path"] == str(folder / Q8)
    served = hub.bytes_served()
    assert client_download(corral, Q8) == str(folder / Q8)
    assert hub.bytes_served() == served  # the client checked the file and kept it


def test_files_the_modelscope_client_downloaded_are_reused(corral, hub):
    path = client_download(corral, Q8)
    assert hub.bytes_served(CHAT, Q8) == hub.entry(CHAT, Q8).size
    result = corral.json("pull", CHAT, "--quant", "Q8_0", *MS)
    assert result["reused"] == [Q8] and result["fetched"] == hub.entry(CHAT, MMPROJ).size
    assert hub.bytes_served(CHAT, Q8) == hub.entry(CHAT, Q8).size
    assert result["models"][0]["path"] == path


def test_private_model_needs_modelscope_api_token(corral):
    one_error_line(corral("files", PRIVATE, *MS), "MODELSCOPE_API_TOKEN")
    (model,) = corral.json("pull", PRIVATE, *MS, env={"MODELSCOPE_API_TOKEN": TOKEN})["models"]
    assert model["category"] == "embedding" and model["provenance"]["hub"] == "modelscope"


def test_older_clients_variable_modelscope_domain(corral, hub):
    env = {k: v for k, v in corral.env.items() if k != "MODELSCOPE_ENDPOINT"}
    result = subprocess.run([sys.executable, "-m", "corral", "files", EMBED, *MS, "--json"], env=env,
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "model.safetensors" in result.stdout


def test_offline_pull_uses_the_download_folder(corral, hub):
    corral.ok("pull", EMBED, *MS)
    hub.reset()
    again = corral.json("pull", EMBED, *MS, "--offline")
    assert again["fetched"] == 0 and [m["name"] for m in again["existing"]] == ["corral-test/tiny-embed"]
    assert hub.state.requests == []
    one_error_line(corral("pull", CHAT, *MS, "--offline", "--quant", "Q8_0"), "offline", "has not been downloaded")


def test_unknown_model_and_revision_are_clear_errors(corral):
    one_error_line(corral("files", "corral-test/nope", *MS), "corral-test/nope", "not found on ModelScope")
    one_error_line(corral("files", f"{CHAT}:nope", *MS), "revision 'nope'")
    one_error_line(corral("files", CHAT, *MS, env={"MODELSCOPE_ENDPOINT": "http://127.0.0.1:9"}), "cannot reach ModelScope")


def test_registering_the_plugin_imports_no_modelscope():
    code = (
        "import sys, corral_modelscope\n"
        "from corral.testing import build_host\n"
        "assert build_host().source('modelscope') is corral_modelscope.ModelScopeSource\n"
        "print(any(m in sys.modules for m in ('modelscope', 'modelscope_hub', 'requests')))\n"
    )
    env = {**os.environ, "CORRAL_LOAD_PLUGINS": "modelscope"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
