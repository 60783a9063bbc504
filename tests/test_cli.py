"""The CLI end to end on real files: import, scan, ls, show, edit, rm, lora, component, settings,
plugin-needed answers, bad input, concurrent writers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import plugins_for_tests as tp
from factories import (
    make_sparse_copy,
    write_cross_encoder,
    write_lora_gguf,
    write_malicious_pickle,
    write_mmproj_gguf,
    write_tiny_gguf,
)
from corral.store import Store
from corral.testing.cli import as_json, assert_clean_error
from corral.testing import driver_for


def count_models(run) -> int:
    return len(as_json(run("ls", "--json")))


@pytest.fixture
def tiny(tmp_path) -> Path:
    return write_tiny_gguf(tmp_path / "tiny" / "tiny-chat.gguf")


# --- import on real files ----------------------------------------------------------------------------


@pytest.mark.slow
def test_import_real_gemma(run, gemma_path):
    data = as_json(run("import", gemma_path, "--json"))
    model = data["model"]
    assert (model["category"], model["format"]) == ("chat", "gguf")
    facts = model["facts"]
    assert facts["architecture"] == "gemma3"
    assert facts["quantization"] == "Q4_K_M"
    assert facts["context_length"] == 32768
    assert facts["parameters"] > 200_000_000
    shown = run("show", model["name"])
    assert "gemma3" in shown.stdout and "Q4_K_M" in shown.stdout


def test_import_real_minilm(run, minilm_path):
    model = as_json(run("import", minilm_path, "--json"))["model"]
    assert model["category"] == "embedding"
    assert model["facts"]["embedding_dims"] == 384


def test_import_cross_encoder_is_rerank(run, tmp_path):
    directory = write_cross_encoder(tmp_path / "tiny-reranker")
    model = as_json(run("import", directory, "--json"))["model"]
    assert model["category"] == "rerank"


def test_import_mmproj_offers_component(run, tmp_path, tiny):
    chat = as_json(run("import", tiny, "--json"))["model"]
    mmproj = write_mmproj_gguf(tmp_path / "other" / "mmproj-f16.gguf")
    out = run("import", mmproj)
    assert out.exit_code == 0
    assert "mmproj component" in out.stdout and "corral component add" in out.stdout
    assert chat["name"] in out.stdout  # offered to the chat model it fits
    assert count_models(run) == 1
    data = as_json(run("import", mmproj, "--json"))
    assert data["model"] is None and data["detection"]["component"] == "mmproj"


def test_import_lora_offers_binding(run, tmp_path, tiny):
    as_json(run("import", tiny, "--json"))
    lora = write_lora_gguf(tmp_path / "loras" / "style-lora.gguf")
    data = as_json(run("import", lora, "--json"))
    assert data["model"] is None
    assert data["detection"]["kind"] == "lora"
    assert "corral lora add" in data["offer"]
    assert data["candidates"] == ["tiny-chat"]


def test_model_next_to_mmproj_imports_as_multimodal(run, tmp_path):
    folder = tmp_path / "llava"
    model_file = write_tiny_gguf(folder / "model.gguf")
    write_mmproj_gguf(folder / "mmproj.gguf")
    model = as_json(run("import", model_file, "--json"))["model"]
    assert model["category"] == "multimodal"
    assert [c["kind"] for c in model["components"]] == ["mmproj"]


# --- bad input ---------------------------------------------------------------------------------------


def test_truncated_gguf(run, tmp_path, tiny):
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(tiny.read_bytes()[:200])
    assert_clean_error(run("import", cut), "cut.gguf", "truncated")
    assert count_models(run) == 0


def test_gguf_with_absurd_counts(run, tmp_path):
    from factories import write_gguf_bytes_with

    for case in ("tensor_count", "string_len", "array_len"):
        path = write_gguf_bytes_with(tmp_path / f"{case}.gguf", **{case: 2**60 if case == "tensor_count" else 2**40})
        assert_clean_error(run("import", path), f"{case}.gguf")
    assert count_models(run) == 0


def test_safetensors_claiming_huge_header(run, tmp_path):
    path = tmp_path / "huge-header.safetensors"
    path.write_bytes((200_000_000).to_bytes(8, "little") + b"{}")
    assert_clean_error(run("import", path), "huge-header.safetensors", "200000000")
    assert count_models(run) == 0


def test_directory_with_nothing_usable(run, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("hello")
    assert_clean_error(run("import", empty), str(empty))


def test_missing_path(run, tmp_path):
    assert_clean_error(run("import", tmp_path / "nope.gguf"), "nope.gguf")


@pytest.mark.parametrize("zipped", [False, True])
def test_malicious_pickle_never_runs(run, tmp_path, zipped):
    target = tmp_path / "pwned.txt"
    bad = write_malicious_pickle(tmp_path / "pytorch_model.bin", target, zip=zipped)
    assert_clean_error(run("import", bad), "pytorch_model.bin", "--allow-unsafe")
    assert count_models(run) == 0
    assert not target.exists()


def test_unsupported_file(run, tmp_path):
    path = tmp_path / "readme.txt"
    path.write_text("not a model")
    assert_clean_error(run("import", path), "readme.txt", "not a model")


# --- library rules -----------------------------------------------------------------------------------


def test_names_unique_and_same_path_refused(run, tmp_path, tiny):
    as_json(run("import", tiny, "--json"))
    assert_clean_error(run("import", tiny), "already in the library")
    other = write_tiny_gguf(tmp_path / "other.gguf")
    assert_clean_error(run("import", other, "--name", "TINY-CHAT"), "already in the library")
    second = as_json(run("import", other, "--json"))["model"]
    assert second["name"] == "other"
    assert_clean_error(run("edit", "other", "--name", "tiny-chat"), "tiny-chat")


def test_ls_show_edit(run, tiny):
    model = as_json(run("import", tiny, "--json", "--description", "d1"))["model"]
    listed = run("ls")
    assert "tiny-chat" in listed.stdout and "chat" in listed.stdout
    assert as_json(run("ls", "--category", "embedding", "--json")) == []
    as_json(run("edit", model["id"], "--name", "renamed", "--description", "d2", "--json"))
    shown = as_json(run("show", "renamed", "--json"))
    assert shown["model"]["description"] == "d2" and shown["model"]["id"] == model["id"]


def test_rm_keeps_files_cascades_loras_refuses_loaded(run, library, tmp_path, tiny):
    model = as_json(run("import", tiny, "--json"))["model"]
    lora = write_lora_gguf(tmp_path / "l.gguf")
    as_json(run("lora", "add", "tiny-chat", lora, "--json"))
    library.store.acquire_lease(model["id"])
    assert_clean_error(run("rm", "tiny-chat", "--yes"), "loaded")
    assert count_models(run) == 1
    library.store.release_lease(model["id"])
    out = run("rm", "tiny-chat", "--yes")
    assert out.exit_code == 0 and "1 LoRA record" in out.stdout
    assert tiny.exists() and lora.exists()
    assert count_models(run) == 0 and as_json(run("lora", "ls", "--json")) == []


def test_rm_unknown(run):
    assert_clean_error(run("rm", "ghost", "--yes"), "ghost")


def test_lora_checked_against_base(run, tmp_path, tiny):
    as_json(run("import", tiny, "--json"))
    good = write_lora_gguf(tmp_path / "good.gguf")
    bad = write_lora_gguf(tmp_path / "bad.gguf", n_embd=96)
    other_arch = write_lora_gguf(tmp_path / "arch.gguf", base_arch="gemma3")
    bound = as_json(run("lora", "add", "tiny-chat", good, "--weight", "0.5", "--json"))
    assert bound["weight"] == 0.5
    assert_clean_error(run("lora", "add", "tiny-chat", bad), "bad.gguf")
    assert_clean_error(run("lora", "add", "tiny-chat", other_arch), "arch.gguf")
    assert_clean_error(run("lora", "add", "tiny-chat", tiny), "not a LoRA")
    assert [l["name"] for l in as_json(run("lora", "ls", "tiny-chat", "--json"))] == ["good"]
    assert as_json(run("lora", "set", "good", "--weight", "0.75", "--json"))["weight"] == 0.75
    assert [l["weight"] for l in as_json(run("lora", "ls", "tiny-chat", "--json"))] == [0.75]
    assert_clean_error(run("lora", "set", "ghost", "--weight", "1"), "ghost")
    assert_clean_error(run("lora", "set", "good", "--weight", "nan"), "the weight must be a number")
    assert [l["weight"] for l in as_json(run("lora", "ls", "tiny-chat", "--json"))] == [0.75]
    assert run("lora", "rm", "good").exit_code == 0
    assert good.exists()


def test_check_lora_hook_can_refuse(library, tmp_path, tiny):
    from corral.errors import Incompatible
    from corral.plugins import build_host

    library.import_path(tiny)
    library.host = build_host(entry_points=False, plugins=[tp.refusing_lora_plugin])
    with pytest.raises(Incompatible, match="refused by a plugin"):
        library.add_lora("tiny-chat", write_lora_gguf(tmp_path / "l.gguf"))
    assert library.store.list_loras() == []


def test_components(run, tmp_path, tiny):
    as_json(run("import", tiny, "--json"))
    mmproj = write_mmproj_gguf(tmp_path / "mmproj.gguf")
    model = as_json(run("component", "add", "tiny-chat", "mmproj", mmproj, "--json"))
    assert model["category"] == "multimodal"
    assert model["components"][0]["path"] == str(mmproj.resolve())
    assert_clean_error(run("component", "add", "tiny-chat", "mmproj", tiny), "not a mmproj")
    assert_clean_error(run("component", "add", "tiny-chat", "vae", mmproj), "image model")
    model = as_json(run("component", "rm", "tiny-chat", "mmproj", "--json"))
    assert model["category"] == "chat" and model["components"] == []
    assert_clean_error(run("component", "rm", "tiny-chat", "mmproj"), "no mmproj")


def test_image_components(run, tmp_path):
    from factories import write_diffusers_dir, write_vae_safetensors

    pipeline = write_diffusers_dir(tmp_path / "sd-tiny")
    as_json(run("import", pipeline, "--json", "--name", "sd"))
    vae = write_vae_safetensors(tmp_path / "vae.safetensors")
    model = as_json(run("component", "add", "sd", "vae", vae, "--json"))
    assert [c["kind"] for c in model["components"]] == ["vae"]


def test_settings(run, tiny):
    as_json(run("import", tiny, "--json"))
    saved = as_json(run("settings", "tiny-chat", "--n-ctx", "2048", "--set", "seed=7", "--json"))["saved"]
    assert saved == {"n_ctx": 2048, "seed": 7}
    assert_clean_error(run("settings", "tiny-chat", "--set", "n_ctx=lots"), "n_ctx")
    assert_clean_error(run("settings", "tiny-chat", "--set", "warp=9"), "unknown setting 'warp'", "corral-llamacpp")
    assert_clean_error(run("settings", "tiny-chat", "--n-ctx", "-5"), "at least 0")
    assert as_json(run("settings", "tiny-chat", "--unset", "seed", "--json"))["saved"] == {"n_ctx": 2048}
    assert as_json(run("settings", "tiny-chat", "--reset", "--json"))["saved"] == {}


def test_driver_settings_are_known_when_its_plugin_is(home, tiny):
    from click.testing import CliRunner

    from corral.cli import build_cli
    from corral.plugins import build_host, set_host

    set_host(build_host(entry_points=False, plugins=[tp.echo_plugin]))
    try:
        cli = build_cli()
        CliRunner().invoke(cli, ["import", str(tiny)])
        ok = CliRunner().invoke(cli, ["settings", "tiny-chat", "--set", "echo_volume=11", "--json"])
        assert json.loads(ok.stdout)["saved"] == {"echo_volume": 11}
        too_loud = CliRunner().invoke(cli, ["settings", "tiny-chat", "--set", "echo_volume=12"])
        assert too_loud.exit_code != 0 and "at most 11" in too_loud.stderr
    finally:
        set_host(None)


# --- plugin-needed answers and in-process runs -------------------------------------------------------


def test_commands_name_the_missing_plugin(run, tiny, minilm_path):
    as_json(run("import", tiny, "--json"))
    as_json(run("import", minilm_path, "--json", "--name", "minilm"))
    assert_clean_error(run("chat", "tiny-chat", "hi"), "pip install corral-llamacpp")
    assert_clean_error(run("embed", "minilm", "hello"), "pip install corral-sentence-transformers")
    assert_clean_error(run("search", "gemma"), "pip install corral-huggingface")
    assert_clean_error(run("pull", "org/model", "--source", "modelscope"), "pip install corral-modelscope")


def test_missing_backend_gives_install_message(library, minilm_path):
    from corral.errors import PluginMissing
    from corral.plugins import build_host

    library.host = build_host(entry_points=False, plugins=[tp.missing_plugin])
    library.import_path(minilm_path, name="minilm")
    with pytest.raises(PluginMissing, match="pip install corral-missing"):
        driver_for(library.host, library.store.get_model("minilm"))


def test_in_process_chat_through_a_driver(home, tiny):
    from click.testing import CliRunner

    from corral.cli import build_cli
    from corral.plugins import build_host, set_host

    tp.recorder_plugin.events.clear()
    set_host(build_host(entry_points=False, plugins=[tp.echo_plugin, tp.choosy_plugin, tp.recorder_plugin]))
    try:
        cli = build_cli()
        CliRunner().invoke(cli, ["import", str(tiny)])
        out = CliRunner().invoke(cli, ["chat", "tiny-chat", "hello there"])
    finally:
        set_host(None)
    assert out.exit_code == 0, out.stderr
    assert out.stdout.strip() == "echo:hellothere"  # the plain echo driver streams words; select_driver chose it
    assert tp.recorder_plugin.events == [("loaded", "tiny-chat", {"ram": 1}), ("unloaded", "tiny-chat")]


# --- scan ----------------------------------------------------------------------------------------------


def test_scan_adopts_in_place_and_is_idempotent(run, tmp_path, minilm_path):
    root = tmp_path / "models"
    write_tiny_gguf(root / "a" / "chat-a.gguf")
    write_tiny_gguf(root / "b" / "vision-b.gguf")
    write_mmproj_gguf(root / "b" / "mmproj-b.gguf")
    write_cross_encoder(root / "reranker")
    write_lora_gguf(root / "loras" / "style.gguf")
    (root / "notes.txt").write_text("not a model")
    dry = as_json(run("scan", root, "--dry-run", "--json"))["entries"]
    assert sorted(e["status"] for e in dry) == ["lora", "would-add", "would-add", "would-add"]
    assert count_models(run) == 0
    first = as_json(run("scan", root, "--json"))["entries"]
    assert sorted(e["name"] for e in first if e["status"] == "added") == ["chat-a", "reranker", "vision-b"]
    models = {m["name"]: m for m in as_json(run("ls", "--json"))}
    assert models["vision-b"]["category"] == "multimodal"
    assert models["reranker"]["category"] == "rerank"
    again = as_json(run("scan", root, "--json"))["entries"]
    assert [e for e in again if e["status"] == "added"] == []
    assert count_models(run) == 3


def test_scan_missing_dir(run, tmp_path):
    assert_clean_error(run("scan", tmp_path / "nowhere"), "not a directory")


# --- concurrency -----------------------------------------------------------------------------------------


#: ``python -c`` program: one ``corral`` process that, once imported, runs ``corral import FILE`` in every
#: home named on stdin, each at that home's start time, and prints each run's exit code and stderr as JSON.
#: Running the rounds in one process keeps many rounds cheap; each round is the first use of a fresh
#: library by all the processes at the same instant.
CLI_ROUNDS = r"""
import contextlib, io, json, os, sys, time, traceback
from corral.cli import build_cli
import corral.library, corral.store
cli = build_cli()
print("ready", flush=True)
rounds, results = json.loads(sys.stdin.readline()), []
for home, start in rounds:
    os.environ["CORRAL_HOME"] = home
    time.sleep(max(0.0, start - 0.05 - time.time()))
    while time.time() < start:  # the last stretch busy-waited: the processes on CPU start in step
        pass
    err, code = io.StringIO(), 0
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        try:
            cli(args=sys.argv[1:], prog_name="corral")
        except SystemExit as exit:
            code = exit.code or 0
        except Exception:
            traceback.print_exc()
            code = 1
    results.append([code, err.getvalue()])
print(json.dumps(results))
"""

# Only the first two openers of a fresh library can collide, so many short rounds find the race far more
# often than many processes in few rounds do (on two cores, ~10 of 480 imports failed before the fix).
CONCURRENT_IMPORTS = 8
CONCURRENT_ROUNDS = 60
ROUND_GAP = 0.15  # seconds between round starts: room for the round's imports on two cores


def test_concurrent_cli_imports_lose_nothing(tmp_path):
    files = [write_tiny_gguf(tmp_path / "m" / f"model-{i}.gguf") for i in range(CONCURRENT_IMPORTS)]
    homes = [tmp_path / f"home-{r}" for r in range(CONCURRENT_ROUNDS)]
    for home in homes:
        home.mkdir()  # an empty home, as a user may make it: all processes take one path to the database
    env = {**os.environ, "CORRAL_LOAD_PLUGINS": ""}
    procs = [
        subprocess.Popen([sys.executable, "-c", CLI_ROUNDS, "import", str(f)], env=env, text=True,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for f in files
    ]
    for p in procs:  # all imported and waiting before the first start time is set
        assert p.stdout.readline() == "ready\n", p.communicate(timeout=60)[1]
    first = time.time() + 0.3
    rounds = json.dumps([[str(h), first + r * ROUND_GAP] for r, h in enumerate(homes)]) + "\n"
    for p in procs:
        p.stdin.write(rounds)
        p.stdin.flush()
    failed = []
    for f, p in zip(files, procs):
        out, err = p.communicate(timeout=120 + CONCURRENT_ROUNDS * ROUND_GAP)
        assert p.returncode == 0, err
        runs = json.loads(out)
        failed += [(r, f.stem, text.strip().splitlines()[-1:]) for r, (code, text) in enumerate(runs) if code]
    assert failed == [], f"{len(failed)} of {len(files) * len(homes)} imports failed: {failed[:5]}"
    listed = subprocess.run([sys.executable, "-m", "corral", "ls", "--json"], capture_output=True,
                            text=True, check=True, env={**env, "CORRAL_HOME": str(homes[0])})
    assert sorted(m["name"] for m in json.loads(listed.stdout)) == sorted(f.stem for f in files)
    for home in homes[1:]:  # the same check without a process per home
        store = Store(home / "library.db")
        assert sorted(m.name for m in store.list_models()) == sorted(f.stem for f in files)
        store.close()


# --- bounded detection through the CLI -------------------------------------------------------------------


def test_huge_sparse_file_imports_like_the_small_one(run, tmp_path, tiny):
    big = make_sparse_copy(tiny, tmp_path / "big" / "huge.gguf")
    model = as_json(run("import", big, "--json"))["model"]
    assert model["size_bytes"] == big.stat().st_size
    assert model["facts"]["layers"] == 2
