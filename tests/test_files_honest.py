"""Files counted and touched honestly: sizes by inode, so a hard link or one file under two records counts
once in `clean preview`, `manifest show` and `corral ls`; `clean` deletes only files the chosen records own
and no other record uses, never a copy `scan` found and never added."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import attrs
import pytest

from factories import write_mmproj_gguf, write_tiny_gguf
from corral.cli.base import human_size
from corral.manifests.files import DiskTally, library_tally
from corral.testing.cli import as_json


def manifest(home: Path, model_id: str) -> dict:
    return json.loads((home / "manifests" / f"{model_id}.json").read_text())


def total_line(out: str, what: str) -> str:
    return next(l for l in out.splitlines() if what in l and "on disk" in l)


@pytest.fixture
def linked(run, tmp_path) -> dict[str, Path]:
    """Two chat models, each with a projector; the two projectors are two names (hard links) of one file."""
    root = tmp_path / "linked"
    files = {
        "a": write_tiny_gguf(root / "a" / "chat-a.gguf", seed=1),
        "b": write_tiny_gguf(root / "b" / "chat-b.gguf", seed=2),
        "proj": write_mmproj_gguf(root / "a" / "mmproj.gguf"),
    }
    files["proj-link"] = root / "b" / "mmproj-link.gguf"
    os.link(files["proj"], files["proj-link"])
    for key in ("a", "b"):
        as_json(run("import", files[key], "--json"))
    as_json(run("component", "add", "chat-a", "mmproj", files["proj"], "--json"))
    as_json(run("component", "add", "chat-b", "mmproj", files["proj-link"], "--json"))
    return files


def test_tally_counts_an_inode_once(tmp_path):
    one = write_tiny_gguf(tmp_path / "one.gguf")
    os.link(one, tmp_path / "two.gguf")
    (tmp_path / "three.gguf").symlink_to(one)
    size = one.stat().st_size
    tally = DiskTally()
    assert tally.add(one) == size and tally.add(tmp_path / "two.gguf") == 0 and tally.add(tmp_path / "three.gguf") == 0
    assert (tally.bytes, tally.files, tally.freed()) == (size, 1, size)  # both hard links counted: freed
    alone = DiskTally(follow=False)
    alone.add(one)
    assert alone.freed() == 0 and alone.kept_by_links(one) == 1  # the other name keeps the data
    assert DiskTally(follow=False).add(tmp_path / "three.gguf") == 0  # deleting a symlink frees nothing
    folder = DiskTally()
    assert folder.add(tmp_path) == size  # a folder: its files, each inode once


def test_two_names_of_one_inode_count_once_everywhere(run, home, library, linked):
    a, b, proj = (linked[k].stat().st_size for k in ("a", "b", "proj"))
    once = a + b + proj
    assert linked["proj"].stat().st_ino == linked["proj-link"].stat().st_ino

    # corral ls: the total under the table; the JSON stays the list of records.
    assert library_tally(library.store.list_models()).bytes == once
    assert human_size(once) in total_line(run("ls").stdout, "2 model(s)")
    assert len(as_json(run("ls", "--json"))) == 2

    # manifest sync / show: each model's disk use and the total of all manifests.
    as_json(run("manifest", "sync", "--json"))
    shown = as_json(run("manifest", "show", "--json"))
    assert sorted(d["disk_usage"]["bytes"] for d in shown) == sorted([a + proj, b + proj])
    assert {d["name"]: d["disk_usage"]["shared_with"] for d in shown} == {"chat-a": ["chat-b"], "chat-b": ["chat-a"]}
    assert human_size(once) in total_line(run("manifest", "show").stdout, "2 manifests")

    # clean preview: both go, so the projector is freed once (not twice: 2 x proj).
    plan = as_json(run("clean", "preview", "--quant", "F16", "--json"))
    assert plan["frees"] == once
    assert sum(c["frees"] for c in plan["candidates"]) == once
    text = run("clean", "preview", "--quant", "F16").stdout
    assert f"{human_size(once)} freed" in text

    # Only chat-b goes: its projector is a name of the file chat-a keeps, so it stays.
    b_record = library.store.get_model("chat-b")
    library.store.update_model(attrs.evolve(b_record, tags=("scratch",)))
    plan = as_json(run("clean", "preview", "--tag", "scratch", "--json"))
    files = {Path(f["path"]).name: f for f in plan["candidates"][0]["files"]}
    assert files["mmproj-link.gguf"]["action"] == "keep" and "chat-a" in files["mmproj-link.gguf"]["reason"]
    assert plan["frees"] == b
    out = as_json(run("clean", "apply", "--tag", "scratch", "--yes", "--json"))
    assert out["report"]["freed"] == b
    assert linked["proj-link"].exists() and linked["proj"].exists() and not linked["b"].exists()


def test_records_over_one_inode_made_before_the_check_count_once(run, library, tmp_path):
    """Two records over two hard links of one file (as an older Corral imported them): clean deletes both
    names and frees the file once; each candidate's share adds up to the plan's."""
    first = write_tiny_gguf(tmp_path / "x" / "first.gguf")
    second = tmp_path / "y" / "second.gguf"
    second.parent.mkdir()
    os.link(first, second)
    model = library.import_path(first).model
    library.store.add_model(attrs.evolve(model, id="0123abcd4567", name="second", path=second, paths=(second,)))
    size = first.stat().st_size
    assert human_size(size) in total_line(run("ls").stdout, "2 model(s)")
    plan = as_json(run("clean", "preview", "--quant", "F16", "--json"))
    assert plan["frees"] == size and sorted(c["frees"] for c in plan["candidates"]) == [0, size]
    out = as_json(run("clean", "apply", "--quant", "F16", "--yes", "--json"))
    assert out["report"]["freed"] == size and not first.exists() and not second.exists()


@pytest.mark.parametrize("how", ["hard link", "byte copy"])
def test_clean_never_deletes_a_copy_scan_found(run, home, tmp_path, how):
    shelf = tmp_path / "shelf"
    tiny = write_tiny_gguf(shelf / "tiny.gguf")
    as_json(run("import", tiny, "--json"))
    copy = shelf / "copy-of-tiny.gguf"
    os.link(tiny, copy) if how == "hard link" else shutil.copyfile(tiny, copy)
    scanned = as_json(run("scan", shelf, "--json"))
    assert {(Path(e["path"]).name, e["status"]) for e in scanned["entries"]} == {
        ("tiny.gguf", "exists"), ("copy-of-tiny.gguf", "copy")}
    (record,) = as_json(run("ls", "--json"))
    assert record["copies"] == [str(copy)]

    # The manifest lists the copy; a hard link is the same file, so it counts once.
    as_json(run("manifest", "sync", "--json"))
    usage = manifest(home, record["id"])["disk_usage"]
    size = tiny.stat().st_size
    assert usage["bytes"] == (size if how == "hard link" else 2 * size)
    assert human_size(size) in total_line(run("ls").stdout, "1 model(s)")  # ls: the record's own file only

    plan = as_json(run("clean", "preview", "--quant", "F16", "--json"))
    files = {Path(f["path"]).name: f for f in plan["candidates"][0]["files"]}
    assert files["copy-of-tiny.gguf"]["action"] == "keep" and "scan found" in files["copy-of-tiny.gguf"]["reason"]
    assert files["tiny.gguf"]["action"] == "delete"
    if how == "hard link":  # the copy keeps the data: deleting the record's own name frees nothing
        assert plan["frees"] == 0 and "hard link" in files["tiny.gguf"]["reason"]
        assert "frees nothing" in run("clean", "preview", "--quant", "F16").stdout
    else:
        assert plan["frees"] == size
    out = as_json(run("clean", "apply", "--quant", "F16", "--yes", "--json"))
    assert out["report"]["removed"] == ["tiny"] and out["report"]["deleted"] == [str(tiny)]
    assert copy.exists() and not tiny.exists()
    assert as_json(run("ls", "--json")) == []
