"""One JSON vocabulary through the real CLI, on tiny GGUF models: byte fields end in ``_bytes``, ``id`` is
the record id, show / edit / import print one record shape, detection reasons are kept in the record,
``scan --json`` has a summary, and a failing ``--json`` command prints a JSON error document on stdout."""

from __future__ import annotations

import json

from factories import write_lora_gguf, write_tiny_gguf
from corral.testing.cli import as_json, assert_clean_error


def walk_keys(data, path=""):
    """Every (path, key) in a JSON document."""
    if isinstance(data, dict):
        for key, value in data.items():
            yield path, key
            yield from walk_keys(value, f"{path}.{key}")
    elif isinstance(data, list):
        for item in data:
            yield from walk_keys(item, path + "[]")


OLD_BYTE_NAMES = {"size", "ram", "vram", "memory_total", "memory_used", "memory_available", "vram_total",
                  "vram_used"}


def no_old_byte_names(data) -> None:
    found = [(path, key) for path, key in walk_keys(data) if key in OLD_BYTE_NAMES]
    assert found == [], found


def test_show_edit_and_import_print_one_record_shape(run, tmp_path):
    imported = as_json(run("import", write_tiny_gguf(tmp_path / "tiny-chat.gguf"), "--json"))
    assert {"model", "loras", "driver", "detection", "offer", "candidates"} == set(imported)
    model = imported["model"]
    shown = as_json(run("show", model["id"], "--json"))
    edited = as_json(run("edit", model["name"], "--description", "small", "--json"))
    assert set(shown) == set(edited) == {"model", "loras", "driver"}
    assert shown["model"]["id"] == edited["model"]["id"] == model["id"] and len(model["id"]) == 12
    assert edited["model"]["description"] == "small"
    assert set(shown["model"]) == set(edited["model"]) == set(model)
    lora = write_lora_gguf(tmp_path / "style.gguf")
    as_json(run("lora", "add", model["name"], lora, "--json"))
    assert [l["name"] for l in as_json(run("edit", model["name"], "--json"))["loras"]] == ["style"]


def test_detection_reasons_are_kept_in_the_record_and_shown(run, tmp_path):
    imported = as_json(run("import", write_tiny_gguf(tmp_path / "tiny-chat.gguf"), "--json"))
    reasons = imported["detection"]["reasons"]
    assert reasons and imported["model"]["reasons"] == reasons
    assert imported["model"]["confidence"] == imported["detection"]["confidence"]
    shown = as_json(run("show", "tiny-chat", "--json"))["model"]
    assert shown["reasons"] == reasons and shown["confidence"] == imported["detection"]["confidence"]
    text = run("show", "tiny-chat").stdout
    assert "because:" in text and all(reason in text for reason in reasons)


def test_byte_fields_end_in_bytes(run, tmp_path):
    path = write_tiny_gguf(tmp_path / "tiny-chat.gguf")
    imported = as_json(run("import", path, "--json"))
    assert imported["model"]["size_bytes"] == path.stat().st_size
    assert imported["detection"]["size_bytes"] == path.stat().st_size
    no_old_byte_names(imported)
    for args in (("ls", "--json"), ("show", "tiny-chat", "--json"), ("monitor", "--once", "--json"),
                 ("env", "--json")):
        no_old_byte_names(as_json(run(*args)))
    fit = as_json(run("fit", "tiny-chat", "--json"))
    assert fit["id"] == imported["model"]["id"] and fit["model"] == "tiny-chat"
    assert {"ram_bytes", "vram_bytes", "total_bytes", "free_ram_bytes", "free_vram_bytes"} <= set(fit)
    no_old_byte_names(fit)


def test_records_saved_before_the_rename_still_read(run, library, tmp_path):
    path = write_tiny_gguf(tmp_path / "tiny-chat.gguf")
    model_id = as_json(run("import", path, "--json"))["model"]["id"]
    with library.store.transaction() as db:  # the row as an older Corral wrote it
        data = json.loads(db.execute("SELECT data FROM models WHERE id = ?", (model_id,)).fetchone()[0])
        data["size"] = data.pop("size_bytes")
        db.execute("UPDATE models SET data = ? WHERE id = ?", (json.dumps(data), model_id))
    assert as_json(run("show", model_id, "--json"))["model"]["size_bytes"] == path.stat().st_size


def test_scan_json_has_a_summary(run, tmp_path):
    root = tmp_path / "models"
    write_tiny_gguf(root / "a" / "chat-a.gguf")
    write_tiny_gguf(root / "b" / "chat-b.gguf", seed=1)
    write_lora_gguf(root / "loras" / "style.gguf")
    dry = as_json(run("scan", root, "--dry-run", "--json"))
    assert dry["summary"] == {"added": 2, "missing": 0, "looked_at": 3, "dry_run": True,
                              "statuses": {"would-add": 2, "lora": 1}}
    first = as_json(run("scan", root, "--json"))
    assert first["summary"]["added"] == 2 and first["summary"]["dry_run"] is False
    assert sorted(e["name"] for e in first["entries"] if e["status"] == "added") == ["chat-a", "chat-b"]
    assert as_json(run("scan", root, "--json"))["summary"]["added"] == 0


def error_document(result, code: str, exit_code: int) -> dict:
    """A failed --json command: the JSON error document on stdout, the one error line on stderr."""
    assert result.exit_code == exit_code, result.output
    error = json.loads(result.stdout)["error"]
    assert set(error) == {"message", "code", "exit_code"}
    assert (error["code"], error["exit_code"]) == (code, exit_code)
    assert result.stderr.strip().splitlines()[-1].startswith("Error: ")
    assert "Traceback" not in result.output
    return error


def test_a_failing_json_command_prints_a_json_error_document(run, tmp_path):
    missing = error_document(run("show", "ghost", "--json"), "not_found", 2)
    assert "ghost" in missing["message"]
    assert_clean_error(run("show", "ghost", "--json"), "ghost")  # stderr keeps its one line
    as_json(run("import", write_tiny_gguf(tmp_path / "tiny-chat.gguf"), "--json"))
    clash = error_document(run("import", tmp_path / "tiny-chat.gguf", "--json"), "conflict", 3)
    assert "already in the library" in clash["message"]
    error_document(run("fit", "tiny-chat", "--n-ctx", "-5", "--json"), "usage_error", 2)
    plain = run("show", "ghost")
    assert plain.exit_code == 2 and plain.stdout == ""  # without --json: nothing on stdout
    after_dashes = run("show", "--", "--json")  # a name, not the option
    assert after_dashes.exit_code == 2 and after_dashes.stdout == ""
