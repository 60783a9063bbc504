"""Duplicates and names: a file the library already holds (the same path, inode or SHA-256, or a file inside
an imported model folder) is refused naming the record that holds it, or becomes a variant with
`--as-variant`; default names come from the model's own metadata; names are checked on import, edit and
copy; scan skips duplicates quietly and counts them."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from factories import write_embedding_dir, write_tiny_gguf
from corral.errors import Conflict, InvalidSetting
from corral.testing.cli import as_json, assert_clean_error


def names(run) -> list[str]:
    return sorted(m["name"] for m in as_json(run("ls", "--json")))


@pytest.fixture
def tiny(run, tmp_path) -> dict:
    path = write_tiny_gguf(tmp_path / "tiny" / "tiny-chat.gguf")
    return as_json(run("import", path, "--json"))["model"]


# --- duplicates --------------------------------------------------------------------------------------


def test_a_hard_link_is_refused_with_the_existing_name(run, tiny, tmp_path):
    link = tmp_path / "elsewhere" / "same.gguf"
    link.parent.mkdir()
    os.link(tiny["path"], link)
    result = run("import", link)
    assert result.exit_code == Conflict.exit_code
    assert_clean_error(result, str(link), "the same file as tiny-chat", "--as-variant")
    assert names(run) == ["tiny-chat"]


def test_the_same_path_again_and_as_a_variant(run, home, tiny):
    assert_clean_error(run("import", tiny["path"]), "already in the library as tiny-chat", "--as-variant")
    variant = as_json(run("import", tiny["path"], "--as-variant", "--json"))
    assert variant["variant_of"] == "tiny-chat" and variant["model"]["name"] == "tiny-chat-2"
    assert variant["model"]["id"] != tiny["id"]
    # A second record over the same files: links in the library's copies/ folder, no bytes copied.
    path = Path(variant["model"]["path"])
    assert path.is_relative_to(home / "copies") and os.path.samefile(path, tiny["path"])
    named = run("import", tiny["path"], "--as-variant", "--name", "tiny-chat:short")
    assert named.exit_code == 0 and "a variant of tiny-chat" in named.stdout
    assert names(run) == ["tiny-chat", "tiny-chat-2", "tiny-chat:short"]
    as_json(run("settings", "tiny-chat:short", "--n-ctx", "512", "--json"))
    assert as_json(run("show", "tiny-chat", "--json"))["model"]["settings"] == {}


def test_the_same_content_is_refused_once_the_record_knows_its_sha256(run, tiny, tmp_path):
    copy = tmp_path / "copy" / "tiny-copy.gguf"
    copy.parent.mkdir()
    shutil.copyfile(tiny["path"], copy)
    as_json(run("manifest", "sync", "--json"))  # the record learns its SHA-256
    assert_clean_error(run("import", copy), "the same content (SHA-256", "as tiny-chat", "--as-variant")
    assert as_json(run("import", copy, "--as-variant", "--json"))["variant_of"] == "tiny-chat"


def test_a_file_inside_an_imported_folder_is_refused(run, tmp_path):
    folder = write_embedding_dir(tmp_path / "embed")
    as_json(run("import", folder, "--json"))
    inner = folder / "model.safetensors"
    assert_clean_error(run("import", inner), "inside the model folder of embed", "--as-variant")
    # --as-variant: the file becomes a record of its own (it is a part of the folder, not the same model).
    own = as_json(run("import", inner, "--as-variant", "--json"))
    assert "variant_of" not in own and own["model"]["path"] == str(inner.resolve())
    assert names(run) == ["embed", "model"]


def test_scan_skips_duplicates_quietly_with_a_count(run, tiny, tmp_path):
    shelf = tmp_path / "shelf"
    shelf.mkdir()
    os.link(tiny["path"], shelf / "linked.gguf")
    write_tiny_gguf(shelf / "new-one.gguf", seed=5)
    dry = as_json(run("scan", shelf, "--dry-run", "--json"))
    assert {Path(e["path"]).name: e["status"] for e in dry["entries"]} == {"linked.gguf": "copy",
                                                                           "new-one.gguf": "would-add"}
    out = run("scan", shelf)
    assert out.exit_code == 0, out.output
    assert "1 model(s) added, 1 already in the library (duplicates skipped)" in out.stdout
    assert names(run) == ["new-one", "tiny-chat"]
    record = as_json(run("show", "tiny-chat", "--json"))["model"]
    assert record["copies"] == [str(shelf / "linked.gguf")]  # recorded as a copy, never added
    again = run("scan", shelf)
    assert "0 model(s) added, 2 already in the library" in again.stdout


# --- default names -----------------------------------------------------------------------------------


def test_default_name_from_gguf_general_name(run, tmp_path):
    path = write_tiny_gguf(tmp_path / "a" / "ggml-model-f16.gguf", name="Tiny Llama Chat")
    assert as_json(run("import", path, "--json"))["model"]["name"] == "tiny-llama-chat-f16"
    again = write_tiny_gguf(tmp_path / "b" / "another-file.gguf", name="Tiny Llama Chat", seed=1)
    assert as_json(run("import", again, "--json"))["model"]["name"] == "tiny-llama-chat-f16-2"
    plain = write_tiny_gguf(tmp_path / "c" / "say-nothing.gguf", name="Model", seed=2)  # says nothing
    assert as_json(run("import", plain, "--json"))["model"]["name"] == "say-nothing"
    unnamed = write_tiny_gguf(tmp_path / "d" / "no-meta.gguf", seed=3)
    assert as_json(run("import", unnamed, "--json"))["model"]["name"] == "no-meta"


def test_default_name_from_the_config_and_the_model_card(run, tmp_path):
    def folder(name: str, config_name: str | None = None, card: str | None = None) -> Path:
        path = write_embedding_dir(tmp_path / name)
        if config_name is not None:
            config = json.loads((path / "config.json").read_text())
            (path / "config.json").write_text(json.dumps({**config, "_name_or_path": config_name}))
        if card is not None:
            (path / "README.md").write_text(card)
        return path

    def imported(path: Path) -> str:
        return as_json(run("import", path, "--json"))["model"]["name"]

    assert imported(folder("one", "some-org/tiny-embedder")) == "tiny-embedder"
    assert imported(folder("two", "/home/me/checkpoints/run-3")) == "two"  # a local path says nothing
    assert imported(folder("three", "org/base-model", "---\nlicense: mit\n---\n\n# tiny-minilm-v2\n\nText.\n")) \
        == "tiny-minilm-v2"  # the card comes before the config
    assert imported(folder("four", None, "---\nmodel_name: card-named\ntags: [x]\n---\n# A Title With Words\n")) \
        == "card-named"
    assert imported(folder("five", None, "# Model Card for org/tiny-five\n")) == "tiny-five"
    assert imported(folder("six", None, "# SentenceTransformer based on something\n")) == "six"


# --- names are checked -------------------------------------------------------------------------------


@pytest.mark.parametrize("bad, why", [
    ("my model", "it has a space"),
    ("tab\there", "it has a space"),
    ("bell\x07", "control character"),
    ("-dash", "read as an option"),
    ("0123456789ab", "looks like a record id"),
])
def test_bad_names_are_refused_on_import(run, tmp_path, bad, why):
    path = write_tiny_gguf(tmp_path / "t.gguf")
    result = run("import", path, "--name", bad)
    assert result.exit_code == InvalidSetting.exit_code
    assert_clean_error(result, "not a usable model name", why)
    assert names(run) == []


def test_a_space_gets_a_suggestion_and_org_name_tag_is_fine(run, tmp_path):
    assert_clean_error(run("import", write_tiny_gguf(tmp_path / "t.gguf"), "--name", "my model"), "try 'my-model'")
    model = as_json(run("import", tmp_path / "t.gguf", "--name", "my-org/tiny:q8@v1", "--json"))["model"]
    assert as_json(run("show", "my-org/tiny:q8@v1", "--json"))["model"]["id"] == model["id"]


def test_a_name_never_hides_another_records_id(run, library, tiny, tmp_path):
    other = write_tiny_gguf(tmp_path / "other.gguf", seed=1)
    for hiding in (tiny["id"], tiny["id"][:6], tiny["id"][:4].upper()):
        assert_clean_error(run("import", other, "--name", hiding), "would hide tiny-chat", "choose another name")
    second = as_json(run("import", other, "--name", "second", "--json"))["model"]
    assert_clean_error(run("edit", "second", "--name", tiny["id"][:8]), "would hide tiny-chat")
    assert_clean_error(run("edit", "second", "--name", "has space"), "it has a space")
    assert_clean_error(run("edit", "second", "--name", "TINY-CHAT"), "already in the library")
    assert as_json(run("edit", "second", "--name", "Second", "--json"))["model"]["name"] == "Second"  # itself
    assert as_json(run("show", tiny["id"][:6], "--json"))["model"]["name"] == "tiny-chat"
    # cp (Library.copy, also Ollama's /api/copy) checks the same rules.
    with pytest.raises(InvalidSetting, match="it has a space"):
        library.copy("tiny-chat", "a copy")
    with pytest.raises(Conflict, match="would hide"):
        library.copy("Second", tiny["id"][:5])
    assert library.copy("tiny-chat", "tiny-chat:copy").name == "tiny-chat:copy"


def test_default_names_are_cleaned_and_never_hide_an_id(library, tmp_path):
    spaced = write_tiny_gguf(tmp_path / "My Model File.gguf")
    assert library.import_path(spaced).model.name == "My-Model-File"
    first = library.import_path(write_tiny_gguf(tmp_path / "x.gguf", seed=1)).model
    hex_named = write_tiny_gguf(tmp_path / f"{first.id[:6]}.gguf", seed=2)
    assert library.import_path(hex_named).model.name == f"{first.id[:6]}-2"
