"""`corral cp` (a second record over the same files with its own settings) and `corral run` (chat with a
library model, or pull a catalog entry / hub repository first, like `ollama run`): the real CLI, the real
huggingface_hub client against the local fake hub, and the real llama.cpp on the tiny GGUF it serves."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from factories import write_tiny_gguf
from fakehub import CHAT, Q8
from fakehub.fixtures import corral, hub, one_error_line  # noqa: F401
from corral.errors import ConfirmationNeeded, NotFound
from corral.testing.cli import as_json, assert_clean_error


corral_llamacpp = pytest.importorskip("corral_llamacpp")


@pytest.fixture
def host():
    """The built-in plugins and llama.cpp's driver (its settings include the sampling defaults)."""
    from corral.testing.hosts import installed_host

    with installed_host(corral_llamacpp) as fresh:
        yield fresh


def names(run) -> list[str]:
    return sorted(m["name"] for m in as_json(run("ls", "--json")))


@pytest.fixture
def tiny(run, tmp_path) -> dict:
    path = write_tiny_gguf(tmp_path / "tiny" / "tiny-chat.gguf")
    return as_json(run("import", path, "--name", "tiny", "--json"))["model"]


# --- cp ------------------------------------------------------------------------------------------------


def test_cp_makes_a_second_record_with_its_own_settings(run, home, tiny):
    as_json(run("settings", "tiny", "--n-ctx", "512", "--json"))
    out = run("cp", "tiny", "tiny:terse", "--system", "Answer in one word.", "--set", "temperature=0.2")
    assert out.exit_code == 0, out.output
    assert out.stdout.strip() == "Copied tiny to tiny:terse (the same files; its own settings and history)."
    copy = as_json(run("show", "tiny:terse", "--json"))["model"]
    assert copy["id"] != tiny["id"]
    # It starts with the original's settings, then has its own.
    assert copy["settings"] == {"n_ctx": 512, "system_prompt": "Answer in one word.", "temperature": 0.2}
    assert as_json(run("show", "tiny", "--json"))["model"]["settings"] == {"n_ctx": 512}
    assert Path(copy["path"]).is_relative_to(home / "copies") and os.path.samefile(copy["path"], tiny["path"])
    # Removing the copy keeps every file, the original's included.
    assert run("rm", "tiny:terse", "--yes").exit_code == 0
    assert Path(tiny["path"]).exists() and names(run) == ["tiny"]


def test_cp_json_names_what_it_copied(run, tiny):
    document = as_json(run("cp", "tiny", "twin", "--json"))
    assert document["variant_of"] == "tiny" and document["model"]["name"] == "twin"


@pytest.mark.parametrize("args, fragments", [
    (("tiny", "TINY"), ("'TINY' is already in the library",)),
    (("tiny", "a copy"), ("space",)),
    (("tiny", "ok-name", "--set", "temperature=-1"), ("temperature", "at least 0")),
    (("tiny", "ok-name", "--set", "temprature=0.5"), ("did you mean temperature",)),
    (("tiyn", "ok-name"), ("no model 'tiyn'", "tiny")),
])
def test_a_refused_cp_writes_nothing(run, home, tiny, args, fragments):
    result = run("cp", *args)
    assert result.exit_code != 0
    assert_clean_error(result, *fragments)
    assert names(run) == ["tiny"]
    copies = home / "copies"
    assert not copies.exists() or not any(copies.iterdir())


# --- run -----------------------------------------------------------------------------------------------


def test_run_a_library_model_is_chat(run, tiny):
    out = run("run", "tiny", "Hello", "--max-tokens", "3", "--temperature", "0", "--json")
    assert out.exit_code == 0, out.output
    answer = as_json(out)
    assert answer["model"] == "tiny" and isinstance(answer["answer"], str) and answer["completion_tokens"] >= 1


def test_run_an_unknown_name_suggests_library_models(run, tiny):
    result = run("run", "tinyy", "Hello")
    assert result.exit_code == NotFound.exit_code
    assert_clean_error(result, "no model 'tinyy'", "tiny")


@pytest.fixture
def catalog_entry(corral):  # noqa: F811
    corral.ok("catalog", "add", "--id", "tiny-chat", "--category", "chat", "--repo", CHAT, "--parameters", "1M",
              "--quant", "Q8_0:8=*Q8_0.gguf", "--layers", "2", "--hidden-size", "64", "--heads", "4",
              "--vocab-size", "256", "--context-length", "256")
    return "tiny-chat"


def test_run_a_catalog_id_without_a_terminal_asks_for_pull(corral, hub, catalog_entry):  # noqa: F811
    result = corral("run", catalog_entry, "Hello")
    assert result.returncode == ConfirmationNeeded.exit_code
    line = one_error_line(result, "tiny-chat is not in the library", CHAT, "Q8_0", "corral run tiny-chat --pull")
    assert line
    assert hub.bytes_served() == 0 and corral.json("ls") == []


def test_run_pull_pulls_the_catalog_entry_then_chats(corral, hub, catalog_entry):  # noqa: F811
    pytest.importorskip("corral_huggingface")
    out = corral.ok("run", catalog_entry, "Hello", "--pull", "--max-tokens", "3", "--temperature", "0", "--json")
    answer = json.loads(out.stdout)  # only the answer on stdout; the pull reports on stderr
    assert answer["model"] == "tiny-chat" and answer["completion_tokens"] >= 1
    assert f"Pulled {CHAT}" in out.stderr
    (model,) = corral.json("ls")
    assert model["name"] == "tiny-chat" and Path(model["path"]).name == Q8
    assert model["provenance"]["repo"] == CHAT
    served = hub.bytes_served()
    # The next run finds it in the library under the same name: nothing is fetched again.
    corral.ok("run", catalog_entry, "Hello again", "--max-tokens", "2")
    assert hub.bytes_served() == served and len(corral.json("ls")) == 1


def test_run_pull_takes_a_hub_repository(corral, hub):  # noqa: F811
    pytest.importorskip("corral_huggingface")
    # The fake hub's projector is no real CLIP model: the pull lands, the load says what is wrong.
    failed = corral("run", CHAT, "Hi", "--pull", "--quant", "Q8_0", "--max-tokens", "2")
    one_error_line(failed, "could not load this projector", "attach the projector made for this model")
    (model,) = corral.json("ls")
    assert model["name"] == CHAT and model["category"] == "multimodal"  # the projector came along
    corral.ok("component", "rm", CHAT, "mmproj")
    served = hub.bytes_served()
    out = corral.ok("run", CHAT, "Hi", "--max-tokens", "2", "--json")  # in the library now: no pull
    assert json.loads(out.stdout)["model"] == CHAT and hub.bytes_served() == served
