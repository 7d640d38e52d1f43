"""Prune chips whose AIS record is missing or beyond tolerance, from every store at once.

The index is rewritten first (atomically); :func:`~s2xr.store.consistency.reconcile` then
drops the cube rows and files it no longer names, and the daily footprints are rewritten,
so every store agrees afterwards (and after a crash in between, the next reconcile finishes
the job).
"""

from __future__ import annotations

import logging
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
from pyproj import Geod

from s2xr.ais import position_at
from s2xr.store.consistency import reconcile
from s2xr.store.index import index_path, read_index, write_daily_footprints
from s2xr.store.layout import atomic_write

log = logging.getLogger(__name__)
GEOD = Geod(ellps="WGS84")


def find_prunable(index: pd.DataFrame, observations: pd.DataFrame, *, time_tol_min: float,
                  dist_tol_m: float) -> pd.DataFrame:
    """Chips (index rows) to prune with a ``prune_reason``: no AIS fix of the ship within
    ``time_tol_min`` of the sensing time, or the ship's position at sensing time (from those
    fixes) more than ``dist_tol_m`` from the chip centre. Pure."""
    if index.empty:
        return index.assign(prune_reason=[])
    obs = observations.loc[observations["time"].notna()].copy()
    obs["time"] = pd.to_datetime(obs["time"], utc=True)
    when = pd.to_datetime(index["scene_datetime"], utc=True)
    tol = pd.Timedelta(minutes=time_tol_min)
    reasons = np.full(len(index), None, dtype=object)
    by_ship = dict(tuple(obs.groupby("mmsi")))
    near_rows = []
    for k, (mmsi, t) in enumerate(zip(index["mmsi"], when, strict=True)):
        fixes = by_ship.get(mmsi)
        if fixes is None or not ((fixes["time"] - t).abs() <= tol).any():
            reasons[k] = f"no AIS fix within {time_tol_min:g} min of the sensing time"
        else:
            near_rows.append(k)
    if near_rows:
        sub = index.iloc[near_rows]
        pos = position_at(obs, pd.DataFrame({"mmsi": sub["mmsi"].to_numpy(),
                                             "time": when.iloc[near_rows].to_numpy()}),
                          max_extrapolation_s=time_tol_min * 60,
                          max_gap_s=max(time_tol_min * 120, 1800))
        _, _, dist = GEOD.inv(sub["lon"].to_numpy(), sub["lat"].to_numpy(),
                              np.nan_to_num(pos["lon"].to_numpy(float)),
                              np.nan_to_num(pos["lat"].to_numpy(float)))
        for j, k in enumerate(near_rows):
            if pd.isna(pos["lat"].iloc[j]):
                reasons[k] = f"no AIS position at sensing time ({pos['reason'].iloc[j]})"
            elif dist[j] > dist_tol_m:
                reasons[k] = f"AIS position {dist[j]:.0f} m from the chip centre " \
                             f"(tolerance {dist_tol_m:g} m)"
    out = index.assign(prune_reason=reasons)
    return out.loc[out["prune_reason"].notna()]


def prune_chips(root: str | Path, observations: pd.DataFrame, *, time_tol_min: float = 10,
                dist_tol_m: float = 500, dry_run: bool = False) -> pd.DataFrame:
    """Find (and unless ``dry_run`` remove) prunable chips; returns them with reasons."""
    root = Path(root)
    index = read_index(root)
    doomed = find_prunable(index, observations, time_tol_min=time_tol_min,
                           dist_tol_m=dist_tol_m)
    log.info("prune: %d of %d chip(s) %s", len(doomed), len(index),
             "would be removed (dry run)" if dry_run else "removed")
    if dry_run or doomed.empty:
        return doomed
    keep = gpd.GeoDataFrame(index.loc[~index["chip_id"].isin(doomed["chip_id"])],
                            geometry="geometry", crs="EPSG:4326")
    atomic_write(index_path(root), lambda p: keep.to_parquet(p, index=False))
    reconcile(root)
    days = set(pd.to_datetime(index["scene_datetime"], utc=True).dt.strftime("%Y%m%d"))
    for day in sorted(days):
        path = root / "indexes" / f"tiles_{day}.geojson"
        has = (pd.to_datetime(keep["scene_datetime"], utc=True).dt.strftime("%Y%m%d") ==
               day).any()
        if has:
            write_daily_footprints(root, keep, day)
        else:
            path.unlink(missing_ok=True)
    return doomed
