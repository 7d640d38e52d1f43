"""Capture windows of ``s2xr run`` in the ops DB: what was planned, captured, chipped.

A window is one row of the overpass schedule (tile, satellite, start, end). Its life:
``planned`` → ``captured`` (AIS stored; ``ais_path`` says where) → ``chipped``; a captured
window younger than ``ops.lag_days`` is ``queued`` with ``chip_after`` (the L2A product is
not published yet); a window that ended before anything was captured is ``missed``. Because
the state lives here, a stopped or crashed continuous run resumes where it was.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from s2xr.ops.db import connect
from s2xr.ops.jobs import Clock, SystemClock

WINDOW_STATES = ("planned", "captured", "queued", "chipped", "missed")


def _iso(t: pd.Timestamp | None) -> str | None:
    return None if t is None or pd.isna(t) else pd.Timestamp(t).tz_convert("UTC").isoformat()


def window_ids(schedule: pd.DataFrame) -> pd.Series:
    """Stable ids ``{tile}|{satellite}|{start ISO}`` for schedule rows."""
    start = pd.to_datetime(schedule["start_time_utc"], utc=True)
    sat = schedule["satellite"].astype(str) if "satellite" in schedule else "?"
    return (schedule["tile_id"].astype(str) + "|" + sat + "|" +
            start.dt.strftime("%Y-%m-%dT%H:%M:%SZ"))


class WindowStore:
    """The ``capture_windows`` table of one ops DB."""

    def __init__(self, path: Path, clock: Clock | None = None) -> None:
        self.path = Path(path)
        self.clock = clock or SystemClock()

    def plan(self, schedule: pd.DataFrame, run_id: str) -> int:
        """Insert the schedule's windows as ``planned`` (known windows keep their state).
        Returns how many were new."""
        if schedule.empty:
            return 0
        ids = window_ids(schedule)
        now = _iso(self.clock.now())
        rows = [(wid, r.tile_id, getattr(r, "satellite", None), _iso(r.start_time_utc),
                 _iso(r.end_time_utc), getattr(r, "source", None), now, run_id)
                for wid, r in zip(ids, schedule.itertuples(), strict=True)]
        with connect(self.path) as c, c:
            before = c.total_changes
            c.executemany("INSERT OR IGNORE INTO capture_windows (window_id, tile_id, "
                          "satellite, start_time, end_time, source, state, updated_at, "
                          "run_id) VALUES (?, ?, ?, ?, ?, ?, 'planned', ?, ?)", rows)
            return c.total_changes - before

    def set_state(self, ids: Iterable[str], state: str, *, ais_path: str | None = None,
                  n_points: int | None = None, chip_after: pd.Timestamp | None = None) -> None:
        if state not in WINDOW_STATES:
            raise ValueError(f"unknown window state {state!r}")
        now = _iso(self.clock.now())
        with connect(self.path) as c, c:
            for wid in ids:
                c.execute("UPDATE capture_windows SET state=?, updated_at=?, "
                          "ais_path=COALESCE(?, ais_path), n_points=COALESCE(?, n_points), "
                          "chip_after=COALESCE(?, chip_after) WHERE window_id=?",
                          (state, now, ais_path, n_points, _iso(chip_after), wid))

    def windows(self, states: Iterable[str] | None = None) -> pd.DataFrame:
        """Windows (all, or in ``states``) with times as UTC timestamps, by start time."""
        q, args = "SELECT * FROM capture_windows", []
        if states:
            st = list(states)
            q += f" WHERE state IN ({','.join('?' * len(st))})"
            args = st
        with connect(self.path) as c:
            df = pd.read_sql_query(q + " ORDER BY start_time, window_id", c, params=args)
        for col in ("start_time", "end_time", "chip_after", "updated_at"):
            df[col] = pd.to_datetime(df[col], utc=True, format="ISO8601")
        return df

    def counts(self) -> dict[str, int]:
        with connect(self.path) as c:
            rows = c.execute("SELECT state, COUNT(*) n FROM capture_windows "
                             "GROUP BY state").fetchall()
        return {r["state"]: r["n"] for r in rows}
