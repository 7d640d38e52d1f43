"""Plan chips: pixel windows for every positioned target, all at once (pure NumPy, no I/O).

The plan is the contract between planning and cutting (xbatcher-style plan-then-apply): it
holds everything a reader needs, so cutting can run anywhere (threads, processes, a cluster).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pyproj import Transformer

from s2xr.chips.ids import chip_id
from s2xr.config import ChipSpec

PLAN_COLUMNS = [
    "chip_id", "mmsi", "item_id", "collection", "tile_id", "epsg", "scene_datetime", "ais_time",
    "dt_seconds", "method", "uncertainty_m", "lon", "lat", "x", "y", "row0", "col0", "x_left",
    "y_top", "res", "size", "full", "edge_px", "cloud_cover", "processing_baseline", "datatake",
]


@dataclass(frozen=True)
class ChipPlan:
    """``plan``: one row per chip (PLAN_COLUMNS + passthrough AIS columns), sorted for read
    locality (item, 512-px block row, block column). ``rejects``: targets without a chip
    (columns mmsi, item_id, reason)."""

    plan: pd.DataFrame
    rejects: pd.DataFrame


def plan_chips(targets: pd.DataFrame, items: pd.DataFrame, spec: ChipSpec) -> ChipPlan:
    """Pixel windows for ``targets`` on ``items`` (an :func:`~s2xr.scenes.items_table`).

    ``targets`` columns: mmsi, item_id, target_key, lat, lon (position at the item's sensing
    time; NaN when unknown), and optionally ais_time, gap_s, method, uncertainty_m, reason,
    plus any AIS columns to carry (ship_type, length, beam, ship_name, provider, source).
    For each target_key and datatake the item holding the whole chip (then farthest from an
    edge) is kept; a chip partly off the raster is kept only when no item holds it whole.
    """
    size = spec.size
    half = size // 2
    t = targets.reset_index(drop=True)
    no_pos = t["lat"].isna() | t["lon"].isna()
    rejects = [pd.DataFrame({"mmsi": t.loc[no_pos, "mmsi"], "item_id": t.loc[no_pos, "item_id"],
                             "reason": t.loc[no_pos].get("reason", pd.Series(
                                 "no position at sensing time", index=t.index[no_pos]))})]
    t = t.loc[~no_pos]
    info = items.set_index("item_id")
    t = t.join(info[["epsg", "x0", "y0", "res", "height", "width", "datetime", "tile_id",
                     "collection", "cloud_cover", "processing_baseline", "datatake"]],
               on="item_id")
    frames = []
    for epsg, g in t.groupby("epsg"):
        x, y = Transformer.from_crs(4326, int(epsg), always_xy=True).transform(
            g["lon"].to_numpy(float), g["lat"].to_numpy(float))
        scale = g["res"].to_numpy() / spec.resolution  # item grid px per output px
        if not np.allclose(scale, 1.0):
            raise ValueError(f"chip.resolution {spec.resolution} m must equal the items' 10 m "
                             "reference grid")
        col = np.floor((x - g["x0"].to_numpy()) / spec.resolution).astype(np.int64)
        row = np.floor((g["y0"].to_numpy() - y) / spec.resolution).astype(np.int64)
        row0, col0 = row - half, col - half
        h, w = g["height"].to_numpy(), g["width"].to_numpy()
        edge = np.minimum.reduce([row0, col0, h - row0 - size, w - col0 - size])
        inside = (row >= 0) & (row < h) & (col >= 0) & (col < w)
        frames.append(g.assign(x=x, y=y, row0=row0, col0=col0, edge_px=edge,
                               full=edge >= 0, inside=inside))
    if not frames:
        return ChipPlan(pd.DataFrame(columns=PLAN_COLUMNS), pd.concat(rejects))
    cand = pd.concat(frames)
    outside = ~cand["inside"]
    rejects.append(pd.DataFrame({"mmsi": cand.loc[outside, "mmsi"],
                                 "item_id": cand.loc[outside, "item_id"],
                                 "reason": "position at sensing time is outside the item's "
                                           "raster"}))
    cand = cand.loc[~outside]
    cand = cand.sort_values(["target_key", "datatake", "full", "edge_px"],
                            ascending=[True, True, False, False], kind="stable")
    best = cand.drop_duplicates(["target_key", "datatake"], keep="first")
    # static points (no time): keep one chip per point overall (least cloud, newest)
    static = best["target_key"].astype(str).str.startswith("p")
    if static.any():
        s = best.loc[static].sort_values(["target_key", "full", "cloud_cover", "datetime"],
                                         ascending=[True, False, True, False], kind="stable")
        best = pd.concat([best.loc[~static], s.drop_duplicates("target_key")])
    best = best.copy()
    best["scene_datetime"] = best["datetime"]
    best["x_left"] = best["x0"] + best["col0"] * spec.resolution
    best["y_top"] = best["y0"] - best["row0"] * spec.resolution
    best["size"] = size
    best["res"] = spec.resolution
    for col, default in (("ais_time", pd.NaT), ("gap_s", np.nan), ("method", "static"),
                         ("uncertainty_m", np.nan)):
        if col not in best:
            best[col] = default
    best["dt_seconds"] = best["gap_s"]
    best["chip_id"] = [chip_id(m, d, la, lo) for m, d, la, lo in
                       zip(best["mmsi"], best["scene_datetime"], best["lat"], best["lon"],
                           strict=True)]
    best = best.drop_duplicates("chip_id")
    best["_blk"] = (best["row0"] // 512) * 1000 + best["col0"] // 512
    best = best.sort_values(["item_id", "_blk", "row0", "col0"], kind="stable")
    extra = [c for c in best.columns if c not in PLAN_COLUMNS and c not in {
        "x0", "y0", "height", "width", "datetime", "inside", "_blk", "gap_s", "target_key",
        "reason", "row", "time"}]
    plan = best[PLAN_COLUMNS + extra].reset_index(drop=True)
    return ChipPlan(plan, pd.concat(rejects, ignore_index=True))


def plan_digest(plan: pd.DataFrame) -> str:
    """A short stable digest of a plan's chip IDs (for logs and idempotency checks)."""
    return hashlib.sha1("\n".join(sorted(plan["chip_id"])).encode()).hexdigest()[:12]
