"""The SQLite ops database: runs, chip jobs and capture windows, with versioned migrations.

(Its ``ais_observations`` table is only read for datasets written before the AIS
observations moved to ``indexes/ais_observations.parquet``; see
:mod:`s2xr.ops.observations`.)

WAL mode, one connection per call site, every write in a transaction. Times are ISO 8601
UTC strings. The schema version lives in ``PRAGMA user_version``; :data:`MIGRATIONS` is an
append-only list, so an older database is upgraded in place on open.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

from s2xr.errors import StorageError

log = logging.getLogger(__name__)

MIGRATIONS: list[str] = [
    # 1: the predecessor's tables, made explicit, plus runs
    """
    CREATE TABLE runs (
        run_id      TEXT PRIMARY KEY,
        kind        TEXT NOT NULL,
        started_at  TEXT NOT NULL,
        ended_at    TEXT,
        status      TEXT NOT NULL CHECK (status IN ('running','done','failed','interrupted')),
        pid         INTEGER,
        summary     TEXT
    );
    CREATE TABLE ais_observations (
        id          INTEGER PRIMARY KEY,
        mmsi        INTEGER NOT NULL,
        time        TEXT,
        lat         REAL NOT NULL,
        lon         REAL NOT NULL,
        sog REAL, cog REAL, heading REAL,
        ship_type INTEGER, length REAL, beam REAL, ship_name TEXT,
        source TEXT, provider TEXT, tile_id TEXT, run_id TEXT,
        UNIQUE (mmsi, time, lat, lon)
    );
    CREATE INDEX ais_obs_mmsi_time ON ais_observations (mmsi, time);
    CREATE TABLE chip_jobs (
        job_id          TEXT PRIMARY KEY,
        mmsi            INTEGER,
        item_id         TEXT,
        scene_datetime  TEXT,
        chip_id         TEXT,
        state           TEXT NOT NULL CHECK (state IN ('pending','running','done','failed',
                            'rejected','no_scene','deferred','abandoned')),
        attempts        INTEGER NOT NULL DEFAULT 0,
        reason          TEXT,
        next_attempt_at TEXT,
        created_at      TEXT NOT NULL,
        updated_at      TEXT NOT NULL,
        run_id          TEXT
    );
    CREATE INDEX chip_jobs_state ON chip_jobs (state, next_attempt_at);
    CREATE UNIQUE INDEX chip_jobs_chip ON chip_jobs (chip_id) WHERE chip_id IS NOT NULL;
    """,
    # 2: where the AIS points of a job came from (for retries)
    """
    ALTER TABLE chip_jobs ADD COLUMN ais_source TEXT;
    """,
    # 3: capture windows of `s2xr run` (planned → captured → chipped, or queued for the lag)
    """
    CREATE TABLE capture_windows (
        window_id   TEXT PRIMARY KEY,
        tile_id     TEXT NOT NULL,
        satellite   TEXT,
        start_time  TEXT NOT NULL,
        end_time    TEXT NOT NULL,
        source      TEXT,
        state       TEXT NOT NULL CHECK (state IN ('planned','captured','queued','chipped',
                        'missed')),
        ais_path    TEXT,
        n_points    INTEGER,
        chip_after  TEXT,
        updated_at  TEXT NOT NULL,
        run_id      TEXT
    );
    CREATE INDEX capture_windows_state ON capture_windows (state, chip_after);
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)


def _statements(script: str) -> list[str]:
    """The SQL statements of a migration script, one by one."""
    out, buf = [], ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            out.append(buf.strip())
            buf = ""
    if buf.strip():
        out.append(buf.strip())
    return out


def migrate(conn: sqlite3.Connection) -> int:
    """Apply pending migrations; returns the schema version.

    The version is read and every pending migration applied inside one ``BEGIN EXCLUSIVE``
    transaction, so processes opening a new database at the same moment (a dashboard and a
    cron job) wait for each other instead of creating the same tables twice."""
    if conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION:
        return SCHEMA_VERSION  # the common case: no lock taken
    previous = conn.isolation_level
    conn.isolation_level = None  # explicit transaction control
    try:
        conn.execute("BEGIN EXCLUSIVE")
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StorageError(f"ops DB schema v{version} is newer than this s2xr "
                                   f"(v{SCHEMA_VERSION}); upgrade s2xr")
            _refuse_foreign(conn)
            for v in range(version, SCHEMA_VERSION):
                for stmt in _statements(MIGRATIONS[v]):
                    conn.execute(stmt)
                conn.execute(f"PRAGMA user_version = {v + 1}")
                log.info("ops DB migrated to schema v%d", v + 1)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    finally:
        conn.isolation_level = previous
    return SCHEMA_VERSION


def _refuse_foreign(conn: sqlite3.Connection) -> None:
    """Raise when the database has tables but no s2xr schema version (another tool's)."""
    # one read transaction: another process may commit the first migration in between
    own = not conn.in_transaction
    if own:
        conn.execute("BEGIN")
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        foreign = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
            "ORDER BY name")] if version == 0 else []
    finally:
        if own:
            conn.execute("COMMIT")
    if foreign:
        raise StorageError(
            f"this database has tables {foreign} but no s2xr schema version: not an s2xr "
            "ops DB (the predecessor's ops.db?). Point ops.db_path at a new file; read its "
            "AIS with `--ais ops.db` (docs/migrating.md)")


def _set_wal(conn: sqlite3.Connection) -> None:
    """WAL mode (persistent in the file). Switching a brand-new file can meet another
    opener's lock: retried for the connection's busy timeout."""
    for _ in range(300):
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc):
                raise
            time.sleep(0.1)
    conn.execute("PRAGMA journal_mode=WAL")


@contextlib.contextmanager
def connect(path: Path) -> Iterator[sqlite3.Connection]:
    """A connection to the ops DB at ``path`` (created and migrated as needed)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, timeout=30, isolation_level="DEFERRED")
    except (OSError, sqlite3.Error) as exc:
        raise StorageError(f"cannot open ops DB {path}: {exc}") from exc
    try:
        conn.row_factory = sqlite3.Row
        try:
            _refuse_foreign(conn)  # before WAL mode rewrites the file's header
        except StorageError as exc:
            raise StorageError(f"ops DB {path}: {exc}") from exc
        _set_wal(conn)
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        try:
            migrate(conn)
        except StorageError as exc:
            raise StorageError(f"ops DB {path}: {exc}") from exc
        yield conn
    finally:
        conn.close()
