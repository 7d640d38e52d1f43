"""Ops DB: migrations, back-off from config, max_retries enforced, crash recovery."""

import sqlite3
import subprocess
import sys

import pandas as pd
import pytest

from s2xr.config import OpsConfig
from s2xr.errors import StorageError
from s2xr.ops import SCHEMA_VERSION, JobStore, ManualClock, backoff, connect
from s2xr.ops.db import MIGRATIONS

T0 = pd.Timestamp("2026-10-01T00:00Z")


def jobs_frame(n=3):
    return pd.DataFrame({"job_id": [f"j{i}" for i in range(n)],
                         "mmsi": 224000000 + pd.RangeIndex(n),
                         "item_id": "S2C_30STE_20260930_0_L2A",
                         "scene_datetime": T0, "chip_id": [f"{i:016x}" for i in range(n)]})


def test_migrations_upgrade_an_old_database(tmp_path):
    path = tmp_path / "ops.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(MIGRATIONS[0])
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    with connect(path) as c:
        assert c.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        cols = [r[1] for r in c.execute("PRAGMA table_info(chip_jobs)")]
        assert "ais_source" in cols
        assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    with pytest.raises(StorageError, match="newer than this s2xr"), connect(path):
        pass


def test_backoff_follows_config_and_max_retries_is_enforced(tmp_path):
    cfg = OpsConfig(max_retries=3, initial_backoff_min=10, max_backoff_hours=0.5)
    assert [backoff(a, cfg) for a in (1, 2, 3, 4)] == [
        pd.Timedelta(minutes=10), pd.Timedelta(minutes=20), pd.Timedelta(minutes=30),
        pd.Timedelta(minutes=30)]
    clock = ManualClock(T0)
    store = JobStore(tmp_path / "ops.sqlite", cfg, clock)
    run = store.start_run("chip")
    store.register(jobs_frame(), run)
    store.mark(["j0"], "failed", "STAC down")
    store.mark(["j1"], "deferred", "lag")
    store.mark(["j2"], "done")
    assert store.due().empty
    clock.advance(minutes=9)
    assert store.due().empty
    clock.advance(minutes=1)
    assert sorted(store.due().job_id) == ["j0", "j1"]
    for expected_wait in (20, 30):
        store.mark(["j0"], "failed", "again")
        clock.advance(minutes=expected_wait - 1)
        assert "j0" not in set(store.due().job_id)
        clock.advance(minutes=1)
        assert "j0" in set(store.due().job_id)
    store.mark(["j0"], "failed", "fourth failure")  # attempts 4 > max_retries 3
    j = store.jobs().set_index("job_id")
    assert j.loc["j0", "state"] == "abandoned" and j.loc["j0", "attempts"] == 4
    assert j.loc["j2", "state"] == "done"
    assert store.counts() == {"abandoned": 1, "deferred": 1, "done": 1}
    assert store.due(limit=1).job_id.tolist() == ["j1"]


def test_register_is_idempotent(tmp_path):
    store = JobStore(tmp_path / "ops.sqlite", clock=ManualClock(T0))
    run = store.start_run("chip")
    store.register(jobs_frame(), run)
    store.mark(["j0"], "done")
    store.register(jobs_frame(), store.start_run("chip"))
    j = store.jobs().set_index("job_id")
    assert len(j) == 3 and j.loc["j0", "state"] == "done"


def test_recover_marks_dead_runs_interrupted(tmp_path):
    store = JobStore(tmp_path / "ops.sqlite", clock=ManualClock(T0))
    run = store.start_run("chip")
    store.register(jobs_frame(), run)
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True)
    dead_pid = int(proc.stdout)
    with connect(store.path) as c, c:
        c.execute("UPDATE runs SET pid=?", (dead_pid,))
    assert store.recover() == 1
    j = store.jobs()
    assert set(j.state) == {"failed"} and set(j.reason) == {"interrupted (process died)"}
    with connect(store.path) as c:
        assert c.execute("SELECT status FROM runs").fetchone()[0] == "interrupted"


def test_a_foreign_database_is_refused_not_migrated(tmp_path):
    """The predecessor's ops.db as ops.db_path: a clear StorageError, the file untouched."""
    import shutil
    import sqlite3 as sq
    from pathlib import Path

    import pytest as _pytest

    from s2xr.errors import StorageError
    from s2xr.ops.db import connect

    db = tmp_path / "ops.db"
    shutil.copy(Path(__file__).parent / "data" / "predecessor" / "ops.db", db)
    before = db.read_bytes()
    with _pytest.raises(StorageError, match=r"not an s2xr ops DB.*--ais ops.db"), connect(db):
        pass
    assert db.read_bytes() == before
    with sq.connect(db) as c:
        assert c.execute("PRAGMA user_version").fetchone()[0] == 0
