"""candidate_targets: which ships each item must be chipped for."""

from __future__ import annotations

import numpy as np
import pandas as pd
from pyproj import Transformer

from s2xr.scenes.match import candidate_targets


def _items() -> pd.DataFrame:
    t = pd.Timestamp("2026-10-02T11:00", tz="UTC")
    return pd.DataFrame([
        {"item_id": "A", "epsg": 32630, "x0": 199980.0, "y0": 4100040.0, "width": 2048,
         "height": 2048, "res": 10.0, "datetime": t},
        {"item_id": "B", "epsg": 32630, "x0": 210000.0, "y0": 4110000.0, "width": 2048,
         "height": 2048, "res": 10.0, "datetime": t + pd.Timedelta(days=2)},
        {"item_id": "C", "epsg": 32629, "x0": 730000.0, "y0": 4100040.0, "width": 4096,
         "height": 4096, "res": 10.0, "datetime": t},
    ])


def _points(n: int = 3000, seed: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    to_ll = Transformer.from_crs(32630, 4326, always_xy=True)
    lon, lat = to_ll.transform(rng.uniform(185_000, 240_000, n),
                               rng.uniform(4_060_000, 4_115_000, n))
    t0 = pd.Timestamp("2026-10-02T11:00", tz="UTC")
    time = t0 + pd.to_timedelta(rng.uniform(-10, 60, n), unit="h")
    time = pd.Series(time).where(rng.random(n) > 0.1)  # 10 % without a time
    return pd.DataFrame({"mmsi": rng.integers(235_000_000, 235_000_040, n), "lon": lon,
                         "lat": lat, "time": time.to_numpy()},
                        index=pd.RangeIndex(n) + 100)


def _reference(points: pd.DataFrame, items: pd.DataFrame, hours: float,
               margin: float = 5000.0) -> tuple[pd.DataFrame, pd.Series]:
    """The rule written out fix by fix: every (fix, item) pair, then first per key."""
    rows, matched = [], set()
    for it in items.itertuples():
        x, y = Transformer.from_crs(4326, it.epsg, always_xy=True).transform(
            points["lon"].to_numpy(), points["lat"].to_numpy())
        for k, (label, p) in enumerate(points.iterrows()):
            inside = (it.x0 - margin < x[k] < it.x0 + it.width * it.res + margin and
                      it.y0 - it.height * it.res - margin < y[k] < it.y0 + margin)
            near = pd.isna(p["time"]) or abs(p["time"] - it.datetime) <= pd.Timedelta(hours=hours)
            if inside and near:
                matched.add(k)
                key = f"p{label}" if pd.isna(p["time"]) else str(p["mmsi"])
                rows.append({"mmsi": p["mmsi"], "item_id": it.item_id, "time": it.datetime,
                             "target_key": key, "row": k})
    unmatched = points["mmsi"].iloc[sorted(set(range(len(points))) - matched)]
    return (pd.DataFrame(rows).drop_duplicates(["target_key", "item_id"]).reset_index(drop=True),
            unmatched)


def test_targets_equal_the_fix_by_fix_rule() -> None:
    pts, items = _points(), _items()
    got, unmatched = candidate_targets(pts, items, window_hours=6)
    want, missed = _reference(pts, items, 6)
    assert len(want) > 50 and set(want["item_id"]) == {"A", "B", "C"}
    key = ["item_id", "target_key"]
    g = got.sort_values(key).reset_index(drop=True)
    w = want.sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(g[["mmsi", "item_id", "target_key", "row"]],
                                  w[["mmsi", "item_id", "target_key", "row"]],
                                  check_dtype=False)
    assert (g["time"] == w["time"]).all()
    # fixes in no target: one record per ship, its first such fix's label and the count
    assert len(missed) > 0
    per_ship = missed.groupby(missed).agg(lambda s: (s.index[0], len(s)))
    assert dict(zip(unmatched["mmsi"], unmatched["row"], strict=True)) == {
        m: v[0] for m, v in per_ship.items()}
    assert all(f"({v[1]} point(s))" in r for v, r in
               zip(per_ship.loc[unmatched["mmsi"]], unmatched["reason"], strict=True))
