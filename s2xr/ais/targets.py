"""Targets at sensing time: where each ship an item sees is when the item is sensed, and the
AIS fixes that position depends on.

    position_targets(points, targets)          lat/lon/method/... at each target's time
    observation_rows(points, targets, ...)     the fixes a chip's position rests on
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from s2xr.ais.tracks import position_at

STATIC_COLUMNS = ("ship_type", "length", "beam", "ship_name", "provider", "source",
                  "to_bow", "to_stern", "to_port", "to_starboard", "overpass_time")
POSITION_RESULT = ("lat", "lon", "ais_time", "gap_s", "method", "uncertainty_m", "reason")


def static_per_ship(points: pd.DataFrame) -> pd.DataFrame:
    """The last known static columns (type, dimensions, name, provider, ...) per MMSI."""
    cols = [c for c in STATIC_COLUMNS if c in points and c != "overpass_time"]
    if not cols:
        return pd.DataFrame(index=pd.Index([], name="mmsi"))
    return points.groupby("mmsi")[cols].last()


def position_targets(points: pd.DataFrame, targets: pd.DataFrame, *, max_extrapolation_s: float,
                     max_gap_s: float) -> pd.DataFrame:
    """Targets + lat, lon (at sensing time), ais_time, gap_s, method, uncertainty_m, reason,
    and the ships' static columns. Timed targets are interpolated along their tracks
    (:func:`s2xr.ais.position_at`); points without time (``target_key`` 'p<row>', ``row``
    their position in ``points``) keep their position."""
    if targets.empty:
        return targets.assign(lat=[], lon=[], ais_time=[], gap_s=[], method=[],
                              uncertainty_m=[], reason=[])
    timed = ~targets["target_key"].astype(str).str.startswith("p")
    out = targets.copy()
    for c, v in (("lat", np.nan), ("lon", np.nan), ("ais_time", pd.NaT), ("gap_s", np.nan),
                 ("method", None), ("uncertainty_m", np.nan), ("reason", None)):
        out[c] = v
    out["ais_time"] = pd.to_datetime(out["ais_time"], utc=True)
    if timed.any():
        has_time = points["time"].notna()
        # every fix usually has a time (fix_times): then no copy of the points
        tracks = points if has_time.all() else points.loc[has_time]
        del has_time
        pos = position_at(tracks, out.loc[timed, ["mmsi", "time"]],
                          max_extrapolation_s=max_extrapolation_s, max_gap_s=max_gap_s)
        for c in POSITION_RESULT:
            out.loc[timed, c] = pos[c].to_numpy()
    if (~timed).any():
        rows = out.loc[~timed, "row"].to_numpy()
        out.loc[~timed, "lat"] = points["lat"].to_numpy()[rows]
        out.loc[~timed, "lon"] = points["lon"].to_numpy()[rows]
        out.loc[~timed, "method"] = "static"
    out = out.join(static_per_ship(points), on="mmsi")
    if "overpass_time" in points:
        first = points.groupby("mmsi")["overpass_time"].first()
        out["overpass_time"] = out["mmsi"].map(first)
    return out


def observation_rows(points: pd.DataFrame, targets: pd.DataFrame | None = None, *,
                     chips: pd.DataFrame | None = None, window_s: float = 1800.0
                     ) -> np.ndarray:
    """Positions (in ``points``) of the fixes the chips depend on, ascending.

    Per target (a ship an item sees: ``mmsi``, ``item_id`` and the sensing ``time``, as
    :func:`position_targets` returns them; only those with a row in ``chips``, the plan,
    when given) the ship's fixes within ±``window_s`` of the sensing time, plus the last fix
    before and the first after it (the fixes it is positioned from, however far); for a
    point without time (``target_key`` 'p<row>', ``row`` its position in ``points``) that
    point. ``targets=None``: every point."""
    if targets is not None and chips is not None:
        pairs = chips[["mmsi", "item_id"]].drop_duplicates() if len(chips) else \
            pd.DataFrame({"mmsi": pd.Series(dtype="int64"), "item_id": pd.Series(dtype=str)})
        targets = targets.merge(pairs.astype({"mmsi": "int64"}),
                                on=["mmsi", "item_id"], how="inner") if len(targets) else targets
    if targets is None:
        return np.arange(len(points))
    keep = np.zeros(len(points), bool)
    if not len(points) or not len(targets):
        return np.flatnonzero(keep)
    t = pd.to_datetime(points["time"], utc=True)
    ns = t.to_numpy("datetime64[ns]").view("int64")
    m = points["mmsi"].to_numpy().astype("int64")
    has_t = np.flatnonzero(t.notna().to_numpy())
    order = has_t[np.lexsort((ns[has_t], m[has_t]))]
    sm, st = m[order], ns[order]
    key = targets["target_key"].astype(str) if "target_key" in targets else \
        pd.Series("", index=targets.index)
    static = key.str.startswith("p").to_numpy()
    if "row" in targets and static.any():
        rows = pd.to_numeric(targets.loc[static, "row"], errors="coerce").dropna()
        keep[rows.to_numpy().astype("int64")] = True
    tt = pd.to_datetime(targets["time"], utc=True)
    timed = ~static & tt.notna().to_numpy()
    q = pd.DataFrame({"m": targets["mmsi"].to_numpy()[timed].astype("int64"),
                      "t": tt.to_numpy("datetime64[ns]").view("int64")[timed]}
                     ).drop_duplicates()
    a = np.searchsorted(sm, q["m"].to_numpy(), "left")
    b = np.searchsorted(sm, q["m"].to_numpy(), "right")
    w = int(window_s * 1e9)
    mark = np.zeros(sm.size + 1, np.int64)  # +1 at a range start, −1 after its end
    for lo_blk, hi_blk, tq in zip(a, b, q["t"].to_numpy(), strict=True):
        seg = st[lo_blk:hi_blk]
        lo = lo_blk + np.searchsorted(seg, tq - w, "left")
        hi = lo_blk + np.searchsorted(seg, tq + w, "right")
        after = lo_blk + np.searchsorted(seg, tq, "right")  # first fix after tq
        lo = min(lo, max(after - 1, lo_blk))
        hi = max(hi, min(after + 1, hi_blk))
        if hi > lo:
            mark[lo] += 1
            mark[hi] -= 1
    keep[order[np.cumsum(mark[:-1]) > 0]] = True
    return np.flatnonzero(keep)
