"""Chip jobs and runs in the ops DB: states, retries with exponential back-off, recovery.

Every attempt ends in ``done``, ``failed``, ``rejected`` (gate reason), ``no_scene`` or
``deferred``. ``failed`` and ``deferred`` jobs are retried after
``initial_backoff_min × 2^(attempts−1)`` minutes, capped at ``max_backoff_hours``; after
``max_retries`` failed attempts a job is ``abandoned``. Time comes from a :class:`Clock` so
tests control it.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pandas as pd

from s2xr.config import OpsConfig
from s2xr.ops.db import connect

TERMINAL = ("done", "rejected", "abandoned")
RETRYABLE = ("failed", "deferred")
STATES = ("pending", "running", "done", "failed", "rejected", "no_scene", "deferred",
          "abandoned")


class Clock(Protocol):
    def now(self) -> pd.Timestamp: ...


class SystemClock:
    """Wall-clock UTC."""

    def now(self) -> pd.Timestamp:
        return pd.Timestamp.now(tz="UTC")


@dataclass
class ManualClock:
    """A clock tests move by hand."""

    t: pd.Timestamp

    def now(self) -> pd.Timestamp:
        return self.t

    def advance(self, **kw: float) -> None:
        self.t = self.t + pd.Timedelta(**kw)


def _iso(t: pd.Timestamp) -> str:
    return pd.Timestamp(t).tz_convert("UTC").isoformat()


def backoff(attempts: int, cfg: OpsConfig) -> pd.Timedelta:
    """Delay before the next attempt after ``attempts`` failed ones (≥ 1)."""
    minutes = cfg.initial_backoff_min * 2 ** max(attempts - 1, 0)
    return pd.Timedelta(minutes=min(minutes, cfg.max_backoff_hours * 60))


class JobStore:
    """Runs and chip jobs of one dataset's ops DB."""

    def __init__(self, path: Path, cfg: OpsConfig | None = None,
                 clock: Clock | None = None) -> None:
        self.path = Path(path)
        self.cfg = cfg or OpsConfig()
        self.clock = clock or SystemClock()

    # -- runs -------------------------------------------------------------------------
    def start_run(self, kind: str) -> str:
        run_id = f"{self.clock.now():%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
        with connect(self.path) as c, c:
            c.execute("INSERT INTO runs (run_id, kind, started_at, status, pid) "
                      "VALUES (?, ?, ?, 'running', ?)",
                      (run_id, kind, _iso(self.clock.now()), os.getpid()))
        return run_id

    def end_run(self, run_id: str, status: str, summary: dict | None = None) -> None:
        with connect(self.path) as c, c:
            c.execute("UPDATE runs SET ended_at=?, status=?, summary=? WHERE run_id=?",
                      (_iso(self.clock.now()), status, json.dumps(summary or {}, default=str),
                       run_id))

    def recover(self) -> int:
        """Mark runs left ``running`` by dead processes as interrupted, and every job still
        ``pending``/``running`` whose run is no longer running (died, failed on a full disk,
        interrupted) as failed, so back-off applies and ``ops retry`` picks it up. Returns
        how many runs were recovered."""
        with connect(self.path) as c:
            rows = c.execute("SELECT run_id, pid FROM runs WHERE status='running'").fetchall()
        dead = [r["run_id"] for r in rows if not _alive(r["pid"])]
        for run_id in dead:
            with connect(self.path) as c, c:
                c.execute("UPDATE runs SET status='interrupted', ended_at=? WHERE run_id=?",
                          (_iso(self.clock.now()), run_id))
        with connect(self.path) as c:
            stale = c.execute(
                "SELECT j.job_id, j.run_id, r.status FROM chip_jobs j LEFT JOIN runs r "
                "ON j.run_id = r.run_id WHERE j.state IN ('pending','running') AND "
                "(r.status IS NULL OR r.status != 'running')").fetchall()
        why = {r["job_id"]: "interrupted (process died)" if r["run_id"] in dead else
               f"left unfinished by a run that ended {r['status'] or 'unrecorded'}"
               for r in stale}
        for reason in set(why.values()):
            self.mark([j for j, w in why.items() if w == reason], "failed", reason)
        return len(dead)

    def fail_unfinished(self, run_id: str, reason: str) -> int:
        """The run's jobs still ``pending``/``running`` become ``failed`` (retryable with
        back-off): called when a run stops on an error. Returns how many."""
        stale = self.jobs(run_id=run_id, states=("pending", "running"))
        self.mark(stale["job_id"], "failed", reason)
        return len(stale)

    def close(self, job_ids: Iterable[str], *, from_states: Iterable[str],
              reason: str) -> int:
        """Jobs in one of ``from_states`` become ``done`` with ``reason`` (e.g. a deferred
        search that a later run completed). Unknown ids are ignored. Returns how many."""
        ids, states = list(job_ids), list(from_states)
        if not ids:
            return 0
        now = _iso(self.clock.now())
        n = 0
        with connect(self.path) as c, c:
            for k in range(0, len(ids), 500):
                chunk = ids[k:k + 500]
                cur = c.execute(
                    f"UPDATE chip_jobs SET state='done', reason=?, next_attempt_at=NULL, "
                    f"updated_at=? WHERE job_id IN ({','.join('?' * len(chunk))}) AND state IN "
                    f"({','.join('?' * len(states))})", (reason, now, *chunk, *states))
                n += cur.rowcount
        return n

    # -- jobs -------------------------------------------------------------------------
    def register(self, jobs: pd.DataFrame, run_id: str, ais_source: str | None = None) -> None:
        """Insert jobs (columns job_id, mmsi, item_id, scene_datetime, chip_id) as pending;
        existing jobs keep their state."""
        now = _iso(self.clock.now())
        rows = [(r.job_id, int(r.mmsi), r.item_id, _iso(r.scene_datetime), r.chip_id, now, now,
                 run_id, ais_source) for r in jobs.itertuples()]
        with connect(self.path) as c, c:
            c.executemany("INSERT OR IGNORE INTO chip_jobs (job_id, mmsi, item_id, "
                          "scene_datetime, chip_id, state, created_at, updated_at, run_id, "
                          "ais_source) VALUES (?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?)", rows)

    def mark(self, job_ids: Iterable[str], state: str, reason: str | None = None,
             reasons: dict[str, str] | None = None) -> None:
        """Move jobs to ``state``; failed/deferred count an attempt and schedule the next
        one (or abandon the job past ``max_retries``)."""
        if state not in STATES:
            raise ValueError(f"unknown job state {state!r}")
        ids = list(job_ids)
        if not ids:
            return
        now = self.clock.now()
        with connect(self.path) as c, c:
            for jid in ids:
                why = (reasons or {}).get(jid, reason)
                if state in RETRYABLE:
                    row = c.execute("SELECT attempts FROM chip_jobs WHERE job_id=?",
                                    (jid,)).fetchone()
                    attempts = (row["attempts"] if row else 0) + 1
                    if attempts > self.cfg.max_retries:
                        c.execute("UPDATE chip_jobs SET state='abandoned', attempts=?, "
                                  "reason=?, next_attempt_at=NULL, updated_at=? "
                                  "WHERE job_id=?", (attempts, why, _iso(now), jid))
                        continue
                    nxt = _iso(now + backoff(attempts, self.cfg))
                    c.execute("UPDATE chip_jobs SET state=?, attempts=?, reason=?, "
                              "next_attempt_at=?, updated_at=? WHERE job_id=?",
                              (state, attempts, why, nxt, _iso(now), jid))
                else:
                    c.execute("UPDATE chip_jobs SET state=?, reason=?, next_attempt_at=NULL, "
                              "updated_at=? WHERE job_id=?", (state, why, _iso(now), jid))

    def jobs(self, *, run_id: str | None = None,
             states: Iterable[str] | None = None) -> pd.DataFrame:
        q, args = "SELECT * FROM chip_jobs WHERE 1=1", []
        if run_id:
            q += " AND run_id=?"
            args.append(run_id)
        if states:
            st = list(states)
            q += f" AND state IN ({','.join('?' * len(st))})"
            args += st
        with connect(self.path) as c:
            return pd.read_sql_query(q, c, params=args)

    def due(self, limit: int | None = None) -> pd.DataFrame:
        """Failed/deferred jobs whose back-off has elapsed, oldest first."""
        q = ("SELECT * FROM chip_jobs WHERE state IN ('failed','deferred') AND "
             "next_attempt_at <= ? ORDER BY next_attempt_at")
        if limit:
            q += f" LIMIT {int(limit)}"
        with connect(self.path) as c:
            return pd.read_sql_query(q, c, params=[_iso(self.clock.now())])

    def counts(self) -> dict[str, int]:
        with connect(self.path) as c:
            rows = c.execute("SELECT state, COUNT(*) n FROM chip_jobs GROUP BY state").fetchall()
        return {r["state"]: r["n"] for r in rows}

    def recent_runs(self, limit: int = 5) -> pd.DataFrame:
        """The last ``limit`` runs: run_id, kind, status, started_at, ended_at (newest
        first)."""
        with connect(self.path) as c:
            return pd.read_sql_query(
                "SELECT run_id, kind, status, started_at, ended_at FROM runs "
                "ORDER BY started_at DESC LIMIT ?", c, params=[int(limit)])

    # -- the chip job's bookkeeping ---------------------------------------------------
    def mark_indexed(self, index: pd.DataFrame, chip_ids: set[str],
                     read_errors: Mapping[str, str] | None = None) -> None:
        """The jobs of ``chip_ids`` from their index rows: ``done`` when the chip passed,
        ``failed`` (retried) when its read failed, else ``rejected`` with the gate's
        reason. ``read_errors``: item id → what could not be read (assets and error), the
        reason given to that item's failed jobs."""
        rows = index.loc[index["chip_id"].isin(chip_ids)]
        ok = rows["qa_pass"].astype(bool)
        read_err = rows["qa_reason"].astype(str).str.startswith("read_error")
        reasons = dict(zip(rows["chip_id"], rows["qa_reason"], strict=True))
        if read_errors:
            for cid, item in zip(rows.loc[read_err, "chip_id"], rows.loc[read_err, "scene_id"],
                                 strict=True):
                if item in read_errors:
                    reasons[cid] = f"read_error: {read_errors[item]}"
        self.mark(rows.loc[ok, "chip_id"], "done")
        self.mark(rows.loc[~ok & read_err, "chip_id"], "failed", reasons=reasons)
        self.mark(rows.loc[~ok & ~read_err, "chip_id"], "rejected", reasons=reasons)

    def retryable_chip_ids(self) -> set[str]:
        """Chip ids of ``failed`` jobs (their chips are cut again)."""
        return set(self.jobs(states=("failed",))["chip_id"].dropna())

    def register_chips(self, plan: pd.DataFrame, run_id: str,
                       ais_source: str | None = None) -> None:
        """One job per planned chip (job id = chip id)."""
        self.register(plan.assign(job_id=plan["chip_id"]), run_id, ais_source)

    def defer(self, points: pd.DataFrame, run_id: str, ais_source: str | None,
              reason: str) -> int:
        """One ``deferred`` job per ship and day of ``points`` (a search that could not run,
        retried with back-off); returns how many."""
        keys = pd.DataFrame({"mmsi": points["mmsi"], "day": day_keys(points)}).drop_duplicates()
        jobs = pd.DataFrame({"job_id": "defer|" + keys["mmsi"].astype(str) + "|" + keys["day"],
                             "mmsi": keys["mmsi"], "item_id": None,
                             "scene_datetime": pd.Timestamp.now(tz="UTC"), "chip_id": None})
        self.register(jobs, run_id, ais_source)
        self.mark(jobs["job_id"], "deferred", reason)
        return len(jobs)

    def close_deferred(self, searched: pd.DataFrame, run_id: str) -> int:
        """Close the deferred jobs of the ship-days this run searched successfully: their
        chips now have jobs of their own, so the deferral is done (not due for another
        retry). Returns how many."""
        if searched.empty:
            return 0
        keys = pd.DataFrame({"mmsi": searched["mmsi"], "day": day_keys(searched)}
                            ).drop_duplicates()
        ids = "defer|" + keys["mmsi"].astype(str) + "|" + keys["day"]
        return self.close(ids, from_states=("deferred", "failed", "pending", "running"),
                          reason=f"search succeeded in run {run_id}")

    def no_scene(self, unmatched: pd.DataFrame, points: pd.DataFrame, run_id: str,
                 ais_source: str | None = None) -> int:
        """One ``no_scene`` job per ship and day of the ``unmatched`` points (``row``: their
        position in ``points``, ``mmsi``, ``reason``), the same id in every run (re-runs
        add no rows). Returns how many."""
        if unmatched.empty:
            return 0
        u = unmatched.assign(day=day_keys(points.loc[unmatched["row"].to_numpy()])
                             .to_numpy()).drop_duplicates(["mmsi", "day"])
        ids = "noscene|" + u["mmsi"].astype(str) + "|" + u["day"]
        self.register(pd.DataFrame({"job_id": ids, "mmsi": u["mmsi"], "item_id": None,
                                    "scene_datetime": pd.Timestamp.now(tz="UTC"),
                                    "chip_id": None}), run_id, ais_source)
        self.mark(ids, "no_scene", reasons=dict(zip(ids, u["reason"].astype(str), strict=True)))
        return len(u)


def day_keys(points: pd.DataFrame) -> pd.Series:
    """``YYYYMMDD`` (UTC) of each point's time, ``any`` without one."""
    if "time" not in points:
        return pd.Series("any", index=points.index)
    t = pd.to_datetime(points["time"], utc=True)
    return t.dt.strftime("%Y%m%d").fillna("any")


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
