"""Opening the library while other processes open or write it: first use by many processes at once,
a writer holding the lock through the WAL switch, and a lock that outlasts the timeout."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
import time
import traceback
from pathlib import Path

import pytest

from corral.errors import CorralError
from corral.records import Category, Format, Model
from corral.store import Store, StoreError, new_id

# Only the first two openers of a fresh library can collide (within microseconds), so it takes many
# rounds to catch the race: before the fix 6 to 32 of the 1280 opens failed, in each of 5 runs on two cores.
PROCESSES = 32
ROUNDS = 40
ROUND_GAP = 0.25  # seconds between round starts: room for 32 opens and inserts on two cores
SPIN = 0.05  # the last stretch before a start is busy-waited, so the processes on CPU start in step


def make_model(name: str) -> Model:
    return Model(id=new_id(), name=name, category=Category.CHAT, format=Format.GGUF, path=Path(f"/m/{name}.gguf"))


def _first_use(homes: list[str], worker: int, ready, go, start, failures) -> None:
    """One process: in every round, at the same instant as the others, open a fresh library and add a model."""
    ready.put(worker)
    go.wait()
    for number, home in enumerate(homes):
        at = start.value + number * ROUND_GAP
        time.sleep(max(0.0, at - SPIN - time.time()))
        while time.time() < at:
            pass
        try:
            store = Store(Path(home) / "library.db")
            store.add_model(make_model(f"w{worker}"))
            store.close()
        except Exception:
            failures.put((number, worker, traceback.format_exc().strip().splitlines()[-1]))
    failures.put(None)


def test_many_processes_opening_a_fresh_library_at_once_lose_nothing(tmp_path):
    homes = [tmp_path / f"home-{n}" for n in range(ROUNDS)]
    for home in homes:
        home.mkdir()  # open_library makes the home first; only the database is new
    ctx = multiprocessing.get_context("spawn")
    ready, failures, go, start = ctx.Queue(), ctx.Queue(), ctx.Event(), ctx.Value("d", 0.0)
    procs = [
        ctx.Process(target=_first_use, args=([str(h) for h in homes], w, ready, go, start, failures))
        for w in range(PROCESSES)
    ]
    for p in procs:
        p.start()
    for _ in procs:  # every process imported and waiting, so the rounds start them together
        ready.get(timeout=120)
    start.value = time.time() + 0.3
    go.set()
    failed, done = [], 0
    while done < PROCESSES:
        item = failures.get(timeout=120 + ROUNDS * ROUND_GAP)
        if item is None:
            done += 1
        else:
            failed.append(item)
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    assert failed == [], f"{len(failed)} of {PROCESSES * ROUNDS} opens failed: {sorted(failed)[:5]}"
    for home in homes:
        store = Store(home / "library.db")
        assert sorted(m.name for m in store.list_models()) == sorted(f"w{w}" for w in range(PROCESSES))
        store.close()


def _hold_write_lock(db: Path, seconds: float) -> threading.Thread:
    """Another connection takes the write lock on ``db`` now and keeps it for ``seconds``."""
    holder = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")

    def release() -> None:
        time.sleep(seconds)
        holder.execute("COMMIT")
        holder.close()

    thread = threading.Thread(target=release)
    thread.start()
    return thread


def test_first_open_waits_out_a_writer_holding_the_new_database(tmp_path):
    # The state another first open is in halfway through its WAL switch: it holds the write lock of a
    # database still in rollback mode. SQLite refuses the switch at once there, without a busy wait.
    db = tmp_path / "library.db"
    sqlite3.connect(db).close()
    released = _hold_write_lock(db, 0.5)
    began = time.monotonic()
    store = Store(db)
    assert time.monotonic() - began >= 0.4
    store.add_model(make_model("m"))
    assert [m.name for m in store.list_models()] == ["m"]
    store.close()
    released.join()
    assert sqlite3.connect(db).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_opening_an_up_to_date_library_does_not_wait_for_a_writer(tmp_path):
    db = tmp_path / "library.db"
    Store(db).close()
    released = _hold_write_lock(db, 1.5)
    began = time.monotonic()
    store = Store(db)
    assert time.monotonic() - began < 0.75
    assert store.list_models() == []
    store.close()
    released.join()


@pytest.mark.parametrize("existing", [False, True], ids=["new-library", "existing-library"])
def test_a_lock_outlasting_the_timeout_is_one_clear_store_error(tmp_path, existing):
    db = tmp_path / "library.db"
    if existing:
        Store(db).close()
    else:
        sqlite3.connect(db).close()
    released = _hold_write_lock(db, 1.5)
    began = time.monotonic()
    with pytest.raises(StoreError) as caught:
        store = Store(db, timeout=0.3)  # a new library fails here; an existing one opens without the lock
        store.add_model(make_model("m"))
    assert time.monotonic() - began < 1.0  # the timeout bounds the wait, not the holder
    message = str(caught.value)
    assert isinstance(caught.value, CorralError) and "\n" not in message
    assert str(db) in message and "locked by another process" in message and "try again" in message
    released.join()
