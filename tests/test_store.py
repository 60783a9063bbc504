"""The SQLite library store: schema, constraints, cascades, leases, concurrent writers."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
from pathlib import Path

import attrs
import pytest

from corral.errors import Conflict, NotFound
from corral.records import Category, Component, ComponentKind, Facts, Format, Lora, Model, Provenance
from corral.store import SCHEMA_VERSION, Store, StoreError, new_id


def make_model(name: str, path: str, **kw) -> Model:
    return Model(id=new_id(), name=name, category=Category.CHAT, format=Format.GGUF, path=Path(path), **kw)


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "library.db")
    yield s
    s.close()


def test_schema_version_and_wal(store, tmp_path):
    assert store.schema_version() == SCHEMA_VERSION
    mode = sqlite3.connect(tmp_path / "library.db").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_newer_schema_is_refused(tmp_path):
    db = tmp_path / "library.db"
    Store(db).close()
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="newer Corral"):
        Store(db)


def test_round_trip_keeps_every_field(store):
    model = make_model(
        "m",
        "/models/m.gguf",
        facts=Facts(architecture="gemma3", context_length=32768, extra={"sliding_window": 512}),
        provenance=Provenance(hub="huggingface", repo="org/m", revision="main", files=("m.gguf",)),
        tags=("text-to-image",),
        settings={"n_ctx": 4096},
        components=(Component(kind=ComponentKind.MMPROJ, path=Path("/models/mmproj.gguf"), size=10),),
    )
    store.add_model(model)
    assert store.get_model("m") == model
    assert store.get_model(model.id) == model
    assert store.get_model(model.id[:6]) == model
    assert store.get_model("M") == model  # names are case-insensitive


def test_names_and_paths_are_unique(store):
    store.add_model(make_model("m", "/a.gguf"))
    with pytest.raises(Conflict, match="named 'm'"):
        store.add_model(make_model("m", "/b.gguf"))
    with pytest.raises(Conflict, match="already in the library"):
        store.add_model(make_model("other", "/a.gguf"))
    assert [m.name for m in store.list_models()] == ["m"]


def test_unknown_model(store):
    with pytest.raises(NotFound, match="no model 'nope'"):
        store.get_model("nope")


def test_delete_cascades_to_loras_and_components(store):
    model = store.add_model(
        make_model("m", "/a.gguf", components=(Component(kind=ComponentKind.MMPROJ, path=Path("/p.gguf")),))
    )
    store.add_lora(Lora(id=new_id(), name="l", base_id=model.id, format=Format.GGUF, path=Path("/l.gguf")))
    store.delete_model(model.id)
    assert store.list_loras() == []
    assert store._conn.execute("SELECT COUNT(*) FROM components").fetchone()[0] == 0


def test_lease_blocks_delete_and_dead_pids_are_ignored(store):
    model = store.add_model(make_model("m", "/a.gguf"))
    store.acquire_lease(model.id)
    assert store.loaded_ids() == {model.id}
    with pytest.raises(Conflict, match="loaded"):
        store.delete_model(model.id)
    store.release_lease(model.id)
    store.acquire_lease(model.id, pid=2**22 + 12345)  # no such process
    assert store.loaded_ids() == set()
    store.delete_model(model.id)


def test_update_model_bumps_updated(store):
    model = store.add_model(make_model("m", "/a.gguf"))
    changed = store.update_model(attrs.evolve(model, description="hello"))
    assert store.get_model("m").description == "hello"
    assert changed.updated >= model.updated


def _writer(db: str, worker: int, count: int) -> None:
    store = Store(Path(db))
    for i in range(count):
        store.add_model(make_model(f"w{worker}-{i}", f"/w{worker}/{i}.gguf"))
    store.close()


def test_concurrent_processes_do_not_lose_records(tmp_path):
    db = str(tmp_path / "library.db")
    Store(Path(db)).close()
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(db, w, 25)) for w in range(6)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    assert len(Store(Path(db)).list_models()) == 6 * 25


def test_migration_from_version_1_keeps_records(tmp_path):
    from corral.store.db import MIGRATIONS

    db = tmp_path / "old.db"
    conn = sqlite3.connect(db)
    conn.executescript(MIGRATIONS[0] + "; PRAGMA user_version = 1;")
    conn.close()
    store = Store(db)
    store.add_model(make_model("m", "/a.gguf"))
    assert store.schema_version() == SCHEMA_VERSION and store.get_model("m").name == "m"


def test_measurements_keep_the_latest_per_settings(store):
    from corral.records import Measurement

    model = store.add_model(make_model("m", "/a.gguf"))
    store.record_measurement(Measurement(model_id=model.id, settings={"n_ctx": 2048}, ram=100))
    store.record_measurement(Measurement(model_id=model.id, settings={"n_ctx": 2048}, ram=120))
    store.record_measurement(Measurement(model_id=model.id, settings={"n_ctx": 8192}, ram=300))
    assert sorted(m.ram for m in store.measurements(model.id)) == [120, 300]
    store.delete_model(model.id)
    assert store.measurements(model.id) == []
