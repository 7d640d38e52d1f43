"""Match AIS points to items: which ship is wanted at which item's sensing time."""

from __future__ import annotations

import numpy as np
import pandas as pd
from pyproj import Transformer

TARGET_COLUMNS = ["mmsi", "item_id", "time", "target_key"]


def candidate_targets(points: pd.DataFrame, items: pd.DataFrame, window_hours: float,
                      margin_m: float = 5000.0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(targets, unmatched) for ``points`` (mmsi, lon, lat, time or NaT) and an
    :func:`~s2xr.scenes.items.items_table`.

    A ship is a target of an item when one of its fixes lies within ``window_hours`` of the
    item's sensing time and within ``margin_m`` of the item's raster. ``targets`` columns:
    mmsi, item_id, time (the item's sensing time: where the ship must be located),
    target_key (one chip per key and datatake: ``mmsi`` for timed tracks, ``p<row>`` for
    points without time). ``unmatched``: row, mmsi, reason for points in no target.
    Pure NumPy; no I/O.
    """
    if points.empty or items.empty:
        reason = "no Sentinel-2 item found for this point" if items.empty else "no points"
        return (pd.DataFrame(columns=TARGET_COLUMNS),
                pd.DataFrame({"row": points.index, "mmsi": points.get("mmsi"),
                              "reason": reason}))
    times = pd.to_datetime(points["time"], utc=True) if "time" in points else \
        pd.Series(pd.NaT, index=points.index, dtype="datetime64[ns, UTC]")
    t_ns = times.to_numpy("datetime64[ns]").astype("int64")
    timed = times.notna().to_numpy()
    lon = points["lon"].to_numpy(float)
    lat = points["lat"].to_numpy(float)
    win_ns = int(window_hours * 3600e9)
    matched = np.zeros(len(points), bool)
    mmsi = points["mmsi"].to_numpy()
    labels = points.index.to_numpy()
    frames = []
    for epsg, its in items.groupby("epsg"):
        x, y = Transformer.from_crs(4326, int(epsg), always_xy=True).transform(lon, lat)
        for it in its.itertuples():
            inside = ((x > it.x0 - margin_m) & (x < it.x0 + it.width * it.res + margin_m) &
                      (y < it.y0 + margin_m) & (y > it.y0 - it.height * it.res - margin_m))
            item_ns = pd.Timestamp(it.datetime).value
            near = ~timed | (np.abs(t_ns - item_ns) <= win_ns)
            sel = inside & near
            if not sel.any():
                continue
            matched |= sel
            # one target per (ship, item) for timed fixes: the ship's first fix here, found
            # before any key string is made (not one string per fix of 1.46 M)
            ti = np.flatnonzero(sel & timed)
            first = ti[np.unique(mmsi[ti], return_index=True)[1]]
            idx = np.sort(np.concatenate([first, np.flatnonzero(sel & ~timed)]))
            keys = [str(m) if t else f"p{r}"
                    for m, t, r in zip(mmsi[idx], timed[idx], labels[idx], strict=True)]
            frames.append(pd.DataFrame({"mmsi": mmsi[idx], "item_id": it.item_id,
                                        "time": it.datetime, "target_key": keys, "row": idx}))
    targets = (pd.concat(frames, ignore_index=True) if frames
               else pd.DataFrame(columns=[*TARGET_COLUMNS, "row"]))
    # timed tracks: one target per (ship, item); static points: one per (point, item)
    targets = targets.drop_duplicates(["target_key", "item_id"]).reset_index(drop=True)
    miss = np.flatnonzero(~matched)
    unmatched = pd.DataFrame({"row": points.index.to_numpy()[miss],
                              "mmsi": points["mmsi"].to_numpy()[miss]})
    # one record per ship (with its first row and how many fixes), not one per fix
    counts = unmatched.groupby("mmsi")["row"].agg(["first", "size"]).reset_index()
    unmatched = pd.DataFrame({
        "row": counts["first"], "mmsi": counts["mmsi"],
        "reason": [f"no Sentinel-2 item covers this ship within ±{window_hours:g} h "
                   f"({n} point(s))" for n in counts["size"]]})
    return targets, unmatched
