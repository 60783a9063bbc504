"""The library store: SQLite in WAL mode under ``CORRAL_HOME``.

Each record is kept whole as JSON (through the one cattrs converter) beside the columns that need an index
or a constraint (names and paths are unique). Writers take the lock up front (``BEGIN IMMEDIATE``) and
wait for each other (``busy_timeout``), so concurrent CLI processes never lose a record. Opening retries
the few steps SQLite refuses without waiting (see :meth:`Store._open`), and a lock held past the timeout
is a :class:`StoreError`, never a bare ``database is locked``.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import attrs

from corral.convert import from_data, to_data
from corral.errors import Conflict, CorralError, NotFound, StoreError
from corral.records import Component, Lora, Measurement, Model, utcnow

#: Each entry moves the schema one version up; never edit a released entry, append a new one.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE models (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE COLLATE NOCASE,
        category TEXT NOT NULL,
        format TEXT NOT NULL,
        path TEXT NOT NULL UNIQUE,
        data TEXT NOT NULL,
        created TEXT NOT NULL,
        updated TEXT NOT NULL
    );
    CREATE TABLE components (
        model_id TEXT NOT NULL REFERENCES models(id) ON DELETE CASCADE,
        kind TEXT NOT NULL,
        path TEXT NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (model_id, kind)
    );
    CREATE TABLE loras (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE COLLATE NOCASE,
        base_id TEXT NOT NULL REFERENCES models(id) ON DELETE CASCADE,
        path TEXT NOT NULL,
        data TEXT NOT NULL,
        created TEXT NOT NULL,
        UNIQUE (base_id, path)
    );
    CREATE TABLE leases (
        model_id TEXT NOT NULL,
        pid INTEGER NOT NULL,
        started TEXT NOT NULL,
        PRIMARY KEY (model_id, pid)
    );
    """,
    """
    CREATE TABLE measurements (
        model_id TEXT NOT NULL REFERENCES models(id) ON DELETE CASCADE,
        settings TEXT NOT NULL,
        data TEXT NOT NULL,
        measured TEXT NOT NULL,
        PRIMARY KEY (model_id, settings)
    );
    """,
    # Answers of OpenAI's Responses API kept for previous_response_id (pruned by age and count).
    """
    CREATE TABLE responses (
        id TEXT PRIMARY KEY,
        created REAL NOT NULL,
        data TEXT NOT NULL
    );
    CREATE INDEX responses_by_created ON responses (created);
    """,
    # Background jobs of the server (pulls): kept so that a restarted server resumes them.
    """
    CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        state TEXT NOT NULL,
        created TEXT NOT NULL,
        updated TEXT NOT NULL,
        data TEXT NOT NULL
    );
    CREATE INDEX jobs_by_kind ON jobs (kind, created);
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)

#: Seconds opening or writing the library waits for another process's lock before giving up.
LOCK_TIMEOUT = 30.0

# SQLITE_BUSY and SQLITE_LOCKED (primary codes; extended codes keep them in the low byte).
_BUSY_CODES = (5, 6)


def new_id() -> str:
    return uuid.uuid4().hex[:12]


def _is_busy(error: sqlite3.OperationalError) -> bool:
    """Whether ``error`` is SQLite refusing a lock another connection holds."""
    code = getattr(error, "sqlite_errorcode", None)  # Python 3.11+
    if code is not None:
        return code & 0xFF in _BUSY_CODES
    return "is locked" in str(error)


def _pid_alive(pid: int) -> bool:
    import psutil

    return psutil.pid_exists(pid)


class Store:
    """Models, components, LoRAs and load leases in one SQLite file."""

    def __init__(self, path: Path, *, timeout: float = LOCK_TIMEOUT) -> None:
        """Open (creating or migrating as needed) the library database at ``path``.

        Waits up to ``timeout`` seconds for other processes that are opening or writing the same file;
        raises :class:`StoreError` when the lock outlasts it.
        """
        self.path = Path(path)
        self.timeout = timeout
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(self.path, timeout=timeout, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA foreign_keys = ON")
        try:
            self._open()
        except BaseException:
            self._conn.close()
            raise
        self._set_busy_timeout(timeout)

    def close(self) -> None:
        self._conn.close()

    def _set_busy_timeout(self, seconds: float) -> None:
        self._conn.execute(f"PRAGMA busy_timeout = {max(0, int(seconds * 1000))}")

    def _locked_error(self) -> StoreError:
        return StoreError(
            f"{self.path}: the library database stayed locked by another process for {self.timeout:g} s; "
            "wait for the other corral commands using this library to finish (or stop a stuck one) "
            "and try again"
        )

    def _open(self) -> None:
        """Switch to WAL and migrate, retrying what another process's lock makes SQLite refuse.

        SQLite refuses some locks at once (SQLITE_BUSY without calling the busy handler) because waiting
        could deadlock: the WAL switch reads the header, then needs the write lock, and fails outright when
        another first open took that lock in between. Every attempt waits only for what is left of one
        overall deadline, so opening never waits longer than ``timeout`` in all.
        """
        deadline = time.monotonic() + self.timeout
        while True:
            self._set_busy_timeout(deadline - time.monotonic())
            try:
                self._use_wal()
                self._migrate()
                return
            except sqlite3.OperationalError as error:
                if not _is_busy(error):
                    raise
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise self._locked_error() from error
                # Randomized, so processes that collided do not collide again in step.
                time.sleep(min(left, random.uniform(0.005, 0.05)))

    def _use_wal(self) -> None:
        # Only the first open of a new library switches: asking again needs the write lock for nothing.
        mode = self._conn.execute("PRAGMA journal_mode").fetchone()[0]
        if mode.lower() != "wal":
            mode = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() != "wal":  # pragma: no cover - filesystems without shared memory
            raise StoreError(f"{self.path}: cannot switch the library database to WAL mode ({mode})")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction holding the database's write lock from the start.

        Waits up to the store's timeout for other writers; a lock held longer raises :class:`StoreError`.
        """
        try:
            with self._write_transaction() as db:
                yield db
        except sqlite3.OperationalError as error:
            if not _is_busy(error):
                raise
            raise self._locked_error() from error

    @contextmanager
    def _write_transaction(self) -> Iterator[sqlite3.Connection]:
        # SQLite's own errors pass through, so that opening can retry a refused lock.
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def _checked_version(self) -> int:
        version = self.schema_version()
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} was written by a newer Corral (schema {version}, this one knows "
                f"{SCHEMA_VERSION}); upgrade corral"
            )
        return version

    def _migrate(self) -> None:
        # An up-to-date library opens without the write lock, so opening never queues behind a writer.
        if self._checked_version() == SCHEMA_VERSION:
            return
        with self._write_transaction() as db:
            # Read again under the lock: another process may have migrated since.
            for number in range(self._checked_version(), SCHEMA_VERSION):
                for statement in MIGRATIONS[number].split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(f"PRAGMA user_version = {number + 1}")

    def schema_version(self) -> int:
        return self._conn.execute("PRAGMA user_version").fetchone()[0]

    # --- models ------------------------------------------------------------------------------------

    def _model_from_row(self, row: sqlite3.Row) -> Model:
        data = json.loads(row["data"])
        data["components"] = [
            json.loads(c["data"])
            for c in self._conn.execute(
                "SELECT data FROM components WHERE model_id = ? ORDER BY kind", (row["id"],)
            )
        ]
        return from_data(data, Model)

    @staticmethod
    def _model_row(model: Model) -> dict:
        data = to_data(attrs.evolve(model, components=()))
        return {
            "id": model.id,
            "name": model.name,
            "category": model.category.value,
            "format": model.format.value,
            "path": str(model.path),
            "data": json.dumps(data),
            "created": model.created.isoformat(),
            "updated": model.updated.isoformat(),
        }

    def _unique_violation(self, exc: sqlite3.IntegrityError, what: str, name: str, path: Path) -> Conflict:
        text = str(exc)
        if ".name" in text:
            return Conflict(f"a {what} named {name!r} is already in the library; choose another --name")
        if ".path" in text:
            return Conflict(f"{path} is already in the library; see `corral ls`")
        return Conflict(f"cannot save {what} {name!r}: {text}")

    def add_model(self, model: Model) -> Model:
        """Insert a model with its components; names and paths must be new."""
        row = self._model_row(model)
        try:
            with self.transaction() as db:
                db.execute(
                    "INSERT INTO models (id, name, category, format, path, data, created, updated) "
                    "VALUES (:id, :name, :category, :format, :path, :data, :created, :updated)",
                    row,
                )
                for component in model.components:
                    self._put_component(db, model.id, component)
        except sqlite3.IntegrityError as exc:
            raise self._unique_violation(exc, "model", model.name, model.path) from None
        return model

    def update_model(self, model: Model, *, touch: bool = True) -> Model:
        """Save a changed model (components included); bumps ``updated`` unless ``touch`` is False
        (bookkeeping such as a computed hash or a missing flag is no use of the model)."""
        if touch:
            model = attrs.evolve(model, updated=utcnow())
        row = self._model_row(model)
        try:
            with self.transaction() as db:
                cur = db.execute(
                    "UPDATE models SET name=:name, category=:category, format=:format, path=:path, "
                    "data=:data, updated=:updated WHERE id=:id",
                    row,
                )
                if cur.rowcount == 0:
                    raise NotFound(f"model {model.name!r} is no longer in the library")
                db.execute("DELETE FROM components WHERE model_id = ?", (model.id,))
                for component in model.components:
                    self._put_component(db, model.id, component)
        except sqlite3.IntegrityError as exc:
            raise self._unique_violation(exc, "model", model.name, model.path) from None
        return model

    @staticmethod
    def _put_component(db: sqlite3.Connection, model_id: str, component: Component) -> None:
        db.execute(
            "INSERT INTO components (model_id, kind, path, data) VALUES (?, ?, ?, ?)",
            (model_id, component.kind.value, str(component.path), json.dumps(to_data(component))),
        )

    def list_models(self, category: str | None = None) -> list[Model]:
        query = "SELECT * FROM models"
        args: tuple = ()
        if category:
            query += " WHERE category = ?"
            args = (category,)
        rows = self._conn.execute(query + " ORDER BY name COLLATE NOCASE", args).fetchall()
        return [self._model_from_row(r) for r in rows]

    def find_model_by_path(self, path: Path) -> Model | None:
        row = self._conn.execute("SELECT * FROM models WHERE path = ?", (str(path),)).fetchone()
        return self._model_from_row(row) if row else None

    def name_taken(self, name: str) -> bool:
        return self._conn.execute("SELECT 1 FROM models WHERE name = ?", (name,)).fetchone() is not None

    def _find(self, table: str, columns: str, ref: str, what: str, hint: str) -> sqlite3.Row:
        """One row by id, unique name (case-insensitive) or unique id prefix (4+ characters)."""
        query = f"SELECT {columns} FROM {table} WHERE "
        row = self._conn.execute(query + "id = ? OR name = ?", (ref, ref)).fetchone()
        if row is None and len(ref) >= 4:
            rows = self._conn.execute(query + "id LIKE ? ESCAPE '\\'", (_like_prefix(ref),)).fetchall()
            if len(rows) > 1:
                raise Conflict(f"{ref!r} matches {len(rows)} {what}s; give more of the id or the name")
            row = rows[0] if rows else None
        if row is None:
            raise NotFound(f"no {what} {ref!r} in the library; {self._suggest(table, ref) or f'see `{hint}`'}")
        return row

    def _suggest(self, table: str, ref: str) -> str:
        """Close names and ids of ``table`` (and, for models, close catalog entries) for a missed ``ref``."""
        from corral.suggest import did_you_mean, model_hint

        rows = self._conn.execute(f"SELECT id, name FROM {table}").fetchall()
        names, ids = [r["name"] for r in rows], [r["id"] for r in rows]
        if table == "models":
            return model_hint(ref, names, ids, home=self.path.parent)
        return did_you_mean(ref, names)

    def get_model(self, ref: str) -> Model:
        """A model by id, unique name (case-insensitive) or unique id prefix."""
        return self._model_from_row(self._find("models", "*", ref, "model", "corral ls"))

    def delete_model(self, model_id: str) -> None:
        """Delete a model record with its components and LoRA records (files are never touched)."""
        with self.transaction() as db:
            if self._live_leases(db, model_id):
                raise Conflict("the model is loaded; unload it first (`corral unload`)")
            db.execute("DELETE FROM models WHERE id = ?", (model_id,))

    # --- LoRAs -------------------------------------------------------------------------------------

    def add_lora(self, lora: Lora) -> Lora:
        try:
            with self.transaction() as db:
                db.execute(
                    "INSERT INTO loras (id, name, base_id, path, data, created) VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        lora.id,
                        lora.name,
                        lora.base_id,
                        str(lora.path),
                        json.dumps(to_data(lora)),
                        lora.created.isoformat(),
                    ),
                )
        except sqlite3.IntegrityError as exc:
            if "loras.base_id, loras.path" in str(exc):
                raise Conflict(f"{lora.path} is already bound to this base model") from None
            raise self._unique_violation(exc, "LoRA", lora.name, lora.path) from None
        return lora

    def list_loras(self, base_id: str | None = None) -> list[Lora]:
        query, args = "SELECT data FROM loras", ()
        if base_id:
            query, args = query + " WHERE base_id = ?", (base_id,)
        rows = self._conn.execute(query + " ORDER BY name COLLATE NOCASE", args)
        return [from_data(json.loads(r["data"]), Lora) for r in rows]

    def lora_name_taken(self, name: str) -> bool:
        return self._conn.execute("SELECT 1 FROM loras WHERE name = ?", (name,)).fetchone() is not None

    def get_lora(self, ref: str) -> Lora:
        """A LoRA by id, unique name or unique id prefix."""
        row = self._find("loras", "data", ref, "LoRA", "corral lora ls")
        return from_data(json.loads(row["data"]), Lora)

    def update_lora(self, lora: Lora) -> Lora:
        """Write a LoRA record's fields again (its id, base and path stay)."""
        with self.transaction() as db:
            db.execute("UPDATE loras SET name = ?, data = ? WHERE id = ?", (lora.name, json.dumps(to_data(lora)), lora.id))
        return lora

    def delete_lora(self, lora_id: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM loras WHERE id = ?", (lora_id,))

    # --- measurements: what loads really took ----------------------------------------------------

    def record_measurement(self, measurement: Measurement) -> None:
        """Keep the latest measurement per model and settings."""
        key = json.dumps(dict(measurement.settings), sort_keys=True)
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO measurements (model_id, settings, data, measured) VALUES (?, ?, ?, ?)",
                (measurement.model_id, key, json.dumps(to_data(measurement)), measurement.measured.isoformat()),
            )

    def measurements(self, model_id: str) -> list[Measurement]:
        """Every recorded measurement of a model, newest first."""
        rows = self._conn.execute(
            "SELECT data FROM measurements WHERE model_id = ? ORDER BY measured DESC", (model_id,)
        )
        return [from_data(json.loads(r["data"]), Measurement) for r in rows]

    # --- stored responses: what previous_response_id refers to ---------------------------------------

    def save_response(self, response_id: str, data: dict, *, max_age: float, keep: int) -> None:
        """Keep one answer (JSON-able ``data``) and drop those older than ``max_age`` seconds or beyond
        the newest ``keep``."""
        now = time.time()
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO responses (id, created, data) VALUES (?, ?, ?)",
                       (response_id, now, json.dumps(data)))
            db.execute("DELETE FROM responses WHERE created < ?", (now - max_age,))
            db.execute("DELETE FROM responses WHERE id NOT IN "
                       "(SELECT id FROM responses ORDER BY created DESC LIMIT ?)", (keep,))

    def get_response(self, response_id: str, *, max_age: float) -> dict | None:
        """A kept answer, or None when it is unknown or older than ``max_age`` seconds."""
        row = self._conn.execute("SELECT data FROM responses WHERE id = ? AND created >= ?",
                                 (response_id, time.time() - max_age)).fetchone()
        return json.loads(row["data"]) if row else None

    def delete_response(self, response_id: str) -> bool:
        """Forget a kept answer; whether there was one."""
        with self.transaction() as db:
            return db.execute("DELETE FROM responses WHERE id = ?", (response_id,)).rowcount > 0

    # --- jobs: the server's background work (pulls), kept across restarts ------------------------------

    def save_job(self, job_id: str, kind: str, state: str, data: dict) -> None:
        """Insert or replace job ``job_id`` of ``kind`` (``pull``) in ``state`` with JSON-able ``data``."""
        now = utcnow().isoformat()
        with self.transaction() as db:
            db.execute(
                "INSERT INTO jobs (id, kind, state, created, updated, data) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(id) DO UPDATE SET state = excluded.state, updated = excluded.updated, "
                "data = excluded.data",
                (job_id, kind, state, now, now, json.dumps(data)),
            )

    def get_job(self, job_id: str) -> dict | None:
        """A job's data, or None when there is no such job."""
        row = self._conn.execute("SELECT data FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return json.loads(row["data"]) if row else None

    def list_jobs(self, kind: str, states: tuple[str, ...] = ()) -> list[dict]:
        """The data of every job of ``kind`` (only those in ``states`` when given), oldest first."""
        query, args = "SELECT data FROM jobs WHERE kind = ?", [kind]
        if states:
            query += f" AND state IN ({', '.join('?' * len(states))})"
            args += list(states)
        rows = self._conn.execute(query + " ORDER BY created, id", args)
        return [json.loads(r["data"]) for r in rows]

    def delete_job(self, job_id: str) -> bool:
        """Forget a job; whether there was one."""
        with self.transaction() as db:
            return db.execute("DELETE FROM jobs WHERE id = ?", (job_id,)).rowcount > 0

    # --- leases: which process holds which model loaded ------------------------------------------

    def _live_leases(self, db: sqlite3.Connection, model_id: str) -> list[int]:
        pids = [r[0] for r in db.execute("SELECT pid FROM leases WHERE model_id = ?", (model_id,))]
        return [pid for pid in pids if _pid_alive(pid)]

    def acquire_lease(self, model_id: str, pid: int | None = None) -> None:
        """Record that process ``pid`` (default: this one) holds ``model_id`` loaded."""
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO leases (model_id, pid, started) VALUES (?, ?, ?)",
                (model_id, pid or os.getpid(), utcnow().isoformat()),
            )

    def release_lease(self, model_id: str, pid: int | None = None) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM leases WHERE model_id = ? AND pid = ?", (model_id, pid or os.getpid()))

    def lease_holders(self, model_id: str) -> list[tuple[int, str]]:
        """The live processes holding ``model_id`` loaded, as ``(pid, started)``; the leases of
        processes that no longer exist are cleared first."""
        with self.transaction() as db:
            rows = db.execute("SELECT pid, started FROM leases WHERE model_id = ? ORDER BY started",
                              (model_id,)).fetchall()
            dead = [r["pid"] for r in rows if not _pid_alive(r["pid"])]
            for pid in dead:
                db.execute("DELETE FROM leases WHERE model_id = ? AND pid = ?", (model_id, pid))
        return [(r["pid"], r["started"]) for r in rows if r["pid"] not in dead]

    def loaded_ids(self) -> set[str]:
        """Ids of models that a live process holds loaded (stale leases of dead processes ignored)."""
        rows = self._conn.execute("SELECT model_id, pid FROM leases").fetchall()
        return {r["model_id"] for r in rows if _pid_alive(r["pid"])}


def _like_prefix(ref: str) -> str:
    escaped = ref.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"

