"""The dataset's AIS observations: ``indexes/ais_observations.parquet``, their one home.

The capture merges every position it stores into it (:class:`s2xr.ais.storage.AisStore`),
the chip job the fixes its chips depend on (:meth:`ObservationStore.record_for_targets`),
and prune reads it (:meth:`ObservationStore.read`). Same columns and key as the capture
(:data:`s2xr.ais.storage.POSITION_COLUMNS`, one row per mmsi, time, lat, lon); writers hold
the file's lock, so a capture and a chip job never lose each other's rows.

Datasets written before this kept the chip job's fixes in the ops DB table
``ais_observations`` instead: :meth:`~ObservationStore.read` still reads them there, and
:meth:`~ObservationStore.migrate_legacy` (run by every chip job) moves them into the file.
"""

from __future__ import annotations

import logging

import pandas as pd

from s2xr.ais.storage import POSITION_COLUMNS, POSITION_KEY, merge_parquet
from s2xr.ais.targets import observation_rows
from s2xr.ops.db import connect
from s2xr.store.layout import DatasetLayout, file_lock

log = logging.getLogger(__name__)

OBSERVATION_COLUMNS = ("mmsi", "time", "overpass_time", "lat", "lon", "sog", "cog")
LEGACY_TABLE = "ais_observations"  # the ops DB table of schema v1-v3


class ObservationStore:
    """The AIS observations of the dataset ``layout`` describes."""

    def __init__(self, layout: DatasetLayout) -> None:
        self.layout = layout

    def exists(self) -> bool:
        """Observations were recorded (the file, or an older dataset's ops DB rows)."""
        return self.layout.ais_observations.is_file() or bool(self._legacy_count())

    def record(self, fixes: pd.DataFrame) -> int:
        """Merge ``fixes`` (AIS points) into the file; returns how many were new."""
        if fixes.empty:
            return 0
        path = self.layout.ais_observations
        with file_lock(path):
            return merge_parquet(path, fixes, POSITION_KEY, POSITION_COLUMNS)

    def record_for_targets(self, points: pd.DataFrame, targets: pd.DataFrame | None = None,
                           *, chips: pd.DataFrame | None = None,
                           window_s: float = 1800.0) -> int:
        """Record the fixes a run's chips depend on (:func:`s2xr.ais.targets.observation_rows`:
        per planned target its ship's fixes within ±``window_s`` of the sensing time and
        the two it is positioned from; ``targets=None``: every point) → how many fixes were
        offered. Prune without ``--ais`` reads them: enough for ``--time-tol-min`` up to
        ``window_s`` / 60. The rest of the AIS file stays where ``chip_jobs.ais_source``
        says."""
        sel = observation_rows(points, targets, chips=chips, window_s=window_s)
        cols = [c for c in POSITION_COLUMNS if c in points]
        self.record(points.iloc[sel][cols])
        return len(sel)

    def read(self, columns: tuple[str, ...] = OBSERVATION_COLUMNS) -> pd.DataFrame:
        """The observations (the ``columns`` there are; an older dataset's ops DB rows
        included), one row per fix."""
        frames = []
        path = self.layout.ais_observations
        if path.is_file():
            import pyarrow.parquet as pq

            have = set(pq.read_schema(path).names)
            frames.append(pd.read_parquet(path, columns=[c for c in columns if c in have]))
        legacy = self.legacy_rows(columns)
        if len(legacy):
            legacy["time"] = pd.to_datetime(legacy["time"], utc=True, format="ISO8601")
            frames.append(legacy)
        if not frames:
            return pd.DataFrame({c: pd.Series(dtype=object) for c in columns
                                 if c != "overpass_time"})
        out = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
        key = [c for c in POSITION_KEY if c in out]
        return out.loc[~out.duplicated(key)].reset_index(drop=True)

    # -- the ops DB table of older datasets ---------------------------------------------
    def _legacy_count(self) -> int:
        db = self.layout.ops_db
        if not db.is_file():
            return 0
        with connect(db) as c:
            return int(c.execute(f"SELECT COUNT(*) FROM {LEGACY_TABLE}").fetchone()[0])

    def legacy_rows(self, columns: tuple[str, ...] = OBSERVATION_COLUMNS) -> pd.DataFrame:
        """The fixes an older dataset kept in the ops DB (empty when none)."""
        if not self._legacy_count():
            return pd.DataFrame(columns=list(columns))
        with connect(self.layout.ops_db) as c:
            have = {r[1] for r in c.execute(f"PRAGMA table_info({LEGACY_TABLE})")}
            cols = [k for k in columns if k in have]
            return pd.read_sql_query(f"SELECT {', '.join(cols)} FROM {LEGACY_TABLE}", c)

    def migrate_legacy(self) -> int:
        """Move an older dataset's ops DB fixes into the file (then empty the table);
        returns how many rows were moved. The caller holds the dataset lock."""
        rows = self.legacy_rows(tuple(POSITION_COLUMNS))
        if rows.empty:
            return 0
        rows["time"] = pd.to_datetime(rows["time"], utc=True, format="ISO8601")
        self.record(rows)
        with connect(self.layout.ops_db) as c, c:
            c.execute(f"DELETE FROM {LEGACY_TABLE}")
        log.info("ops DB: %d AIS observation(s) moved to %s", len(rows),
                 self.layout.ais_observations)
        return len(rows)
