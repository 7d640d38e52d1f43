"""What the dashboard reads: the stores of one dataset (chip index, schedule, ops DB, the
embedded world's manifest) and the tables made from them, read-only.

Plain functions from files to DataFrames, so each view is tested without a browser; the
plots are in :mod:`dashboards.plots`, the gallery and chip detail in
:mod:`dashboards.gallery`.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd

from s2xr.config import Config
from s2xr.store.index import read_index
from s2xr.store.layout import DatasetLayout

log = logging.getLogger(__name__)

TABLE_COLUMNS = ["chip_id", "mmsi", "ship_name", "ship_type", "scene_datetime", "tile_id",
                 "split", "qa_pass", "qa_reason", "qa_cloud_frac", "qa_land_frac",
                 "qa_water_frac", "qa_ndwi_water_frac", "valid_frac", "dt_seconds", "provider",
                 "scene_id"]
_TEXT_HINTS = {"chip_id": "contains …", "ship_name": "contains …", "ship_type": "7 = cargo",
               "scene_datetime": "YYYY-MM-DD", "tile_id": "30STE",
               "split": "train", "qa_reason": "e.g. cloud", "provider": "contains …",
               "scene_id": "contains …"}
HEADER_FILTERS: dict[str, Any] = {
    **{c: {"type": "input", "func": "like", "placeholder": hint}
       for c, hint in _TEXT_HINTS.items()},
    "qa_pass": {"type": "tickCross", "tristate": True, "indeterminateValue": None},
    **{c: {"type": "number", "func": "=", "placeholder": "="} for c in TABLE_COLUMNS
       if c not in _TEXT_HINTS and c != "qa_pass"}}
"""The chip index table's filter per column: text contains (case-insensitive; dates as
text, so ``2026-10-02`` keeps that day), numbers equal, ``qa_pass`` yes / no / any."""


# ------------------------------------------------------------------------------ stores
@dataclass(frozen=True)
class Stores:
    """Paths of one dataset's stores (all under ``storage.root``)."""

    root: Path
    ops_db: Path

    @classmethod
    def of(cls, cfg: Config) -> Stores:
        layout = DatasetLayout.of(cfg)
        return cls(layout.root, layout.ops_db)

    @property
    def layout(self) -> DatasetLayout:
        return DatasetLayout(self.root, self.ops_db)

    @property
    def index(self) -> Path:
        return self.layout.index

    @property
    def schedule(self) -> Path:
        return self.layout.schedule

    @property
    def world(self) -> Path:
        return self.layout.world_manifest

    def signature(self) -> tuple[float, ...]:
        """Modification times of the stores: a change means the views should reload."""
        paths = (self.index, self.schedule, self.ops_db, Path(f"{self.ops_db}-wal"),
                 self.world, self.layout.cube / DatasetLayout.ZARR_META)
        return tuple(p.stat().st_mtime if p.exists() else 0.0 for p in paths)


_INDEX_CACHE: dict[str, tuple[tuple[int, int], gpd.GeoDataFrame]] = {}
_INDEX_LOCK = threading.Lock()


def load_index(root: Path) -> gpd.GeoDataFrame:
    """The chip index, or an empty one when it cannot be read (a view never crashes).
    Read once per version of the file for all sessions of the process (keyed by its
    modification time and size); each caller gets its own shallow copy."""
    path = DatasetLayout(Path(root)).index
    try:
        st = path.stat()
        key = (st.st_mtime_ns, st.st_size)
    except OSError:
        key = None
    with _INDEX_LOCK:
        hit = _INDEX_CACHE.get(str(path))
    if key is not None and hit is not None and hit[0] == key:
        return hit[1].copy(deep=False)
    try:
        index = read_index(root)
    except Exception as exc:  # a half-synced file system, a foreign file
        log.warning("dashboard: chip index of %s unreadable: %s", root, exc)
        return read_index(Path("/nonexistent"))
    if key is not None:
        with _INDEX_LOCK:
            _INDEX_CACHE[str(path)] = (key, index)
    return index.copy(deep=False)


def load_schedule(path: Path) -> pd.DataFrame:
    """The overpass schedule CSV (empty frame if there is none or it is unreadable)."""
    from s2xr.ais.schedule import read_schedule

    if not path.is_file():
        return pd.DataFrame(columns=["tile_id", "satellite", "start_time_utc",
                                     "end_time_utc", "source"])
    try:
        return read_schedule(path)
    except Exception as exc:
        log.warning("dashboard: schedule %s unreadable: %s", path, exc)
        return pd.DataFrame(columns=["tile_id", "satellite", "start_time_utc",
                                     "end_time_utc", "source"])


def world_manifest(stores: Stores) -> dict[str, Any] | None:
    """The embedded world's ``world.json`` (None when it is not built)."""
    if not stores.world.is_file():
        return None
    try:
        return json.loads(stores.world.read_text())
    except (OSError, ValueError):
        return None


def chip_stem(root: Path, rel: str) -> Path:
    """Absolute stem of a chip's files from the index ``path`` (``….tif`` or a stem)."""
    p = root / str(rel)
    return p.with_suffix("") if p.suffix == ".tif" else p


# ------------------------------------------------------------------------------ schedule
def load_windows(stores: Stores) -> pd.DataFrame | None:
    """The ops DB's capture windows (None without a DB or the windows table)."""
    if not stores.ops_db.is_file():
        return None
    try:
        from s2xr.ops.windows import WindowStore

        return WindowStore(stores.ops_db).windows()
    except Exception:  # an older DB, a locked file: the timeline without states
        return None


def schedule_frame(schedule: pd.DataFrame, windows: pd.DataFrame | None) -> pd.DataFrame:
    """Schedule rows with ``label`` (tile · satellite) and the ops DB window ``state``."""
    if schedule.empty:
        return schedule.assign(label=[], state=[])
    out = schedule.copy()
    sat = out["satellite"].astype(str) if "satellite" in out else ""
    out["label"] = out["tile_id"].astype(str) + " · " + sat
    out["state"] = "scheduled"
    if windows is not None and len(windows):
        from s2xr.ops.windows import window_ids

        st = dict(zip(windows["window_id"], windows["state"], strict=True))
        out["state"] = window_ids(out).map(st).fillna("scheduled").to_numpy()
    return out.sort_values("start_time_utc").reset_index(drop=True)


# ------------------------------------------------------------------------------ table
def table_frame(index: pd.DataFrame) -> pd.DataFrame:
    """The chip index as a flat table (no geometry), newest scene first."""
    cols = [c for c in TABLE_COLUMNS if c in index]
    df = pd.DataFrame(index[cols]).copy()
    if "scene_datetime" in df and len(df):
        df["scene_datetime"] = pd.to_datetime(df["scene_datetime"], utc=True).dt.strftime(
            "%Y-%m-%d %H:%M:%S")
        df = df.sort_values(["scene_datetime", "chip_id"], ascending=[False, True])
    for c in ("qa_cloud_frac", "qa_land_frac", "qa_water_frac", "qa_ndwi_water_frac",
              "valid_frac"):
        if c in df:
            df[c] = pd.to_numeric(df[c], errors="coerce").round(3)
    if "qa_pass" in df:
        df["qa_pass"] = df["qa_pass"].astype(bool)
    if "mmsi" in df:
        df["mmsi"] = df["mmsi"].astype("int64")
    if "ship_type" in df:  # text: the header filter's "7" finds every 7x (cargo) type
        df["ship_type"] = pd.to_numeric(df["ship_type"], errors="coerce").astype(
            "Int64").astype(str).replace("<NA>", "")
    return df.reset_index(drop=True)


# ------------------------------------------------------------------------------ ops DB
def ops_tables(stores: Stores, cfg: Config, n_retries: int = 10) -> dict[str, pd.DataFrame]:
    """``jobs`` (count by state), ``windows`` (count by state), ``retries`` (the next
    failed/deferred jobs by next attempt) and ``runs`` (the last runs) of the ops DB."""
    from s2xr.ops import JobStore
    from s2xr.ops.windows import WindowStore

    empty = {"jobs": pd.DataFrame(columns=["state", "count"]),
             "windows": pd.DataFrame(columns=["state", "count"]),
             "retries": pd.DataFrame(columns=["next_attempt_at", "job_id", "mmsi", "attempts",
                                              "reason"]),
             "runs": pd.DataFrame(columns=["run_id", "kind", "status", "started_at",
                                           "ended_at"])}
    if not stores.ops_db.is_file():
        return empty
    try:
        js = JobStore(stores.ops_db, cfg.ops)
        out = dict(empty)
        out["jobs"] = pd.DataFrame(sorted(js.counts().items()), columns=["state", "count"])
        out["windows"] = pd.DataFrame(sorted(WindowStore(stores.ops_db).counts().items()),
                                      columns=["state", "count"])
        due = js.jobs(states=("failed", "deferred"))
        if len(due):
            out["retries"] = due.sort_values("next_attempt_at").head(n_retries)[
                ["next_attempt_at", "job_id", "mmsi", "attempts", "reason"]].reset_index(
                drop=True)
        out["runs"] = js.recent_runs(8)
        return out
    except Exception as exc:  # an older or locked DB: show what we can
        log.warning("dashboard: ops DB %s unreadable: %s", stores.ops_db, exc)
        return empty
