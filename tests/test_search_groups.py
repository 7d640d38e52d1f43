"""search_groups: one search per (tile, UTC day), each point in exactly one group."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from s2xr.errors import StacError
from s2xr.grid import tiles_at_many
from s2xr.scenes.search import CHIP_MARGIN_DEG, SceneSearch, search_groups


def _points(n: int = 500, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    t0 = pd.Timestamp("2026-10-02T10:00", tz="UTC")
    return pd.DataFrame({
        "lon": rng.uniform(-4.5, -2.5, n), "lat": rng.uniform(36.0, 37.5, n),
        "time": t0 + pd.to_timedelta(rng.uniform(-30, 60, n), unit="h"),
    }, index=pd.Index(rng.permutation(10 * n)[:n] + 7))


def test_groups_are_tile_days_with_their_points_bbox_and_window() -> None:
    pts = _points()
    g = search_groups(pts, window_hours=6)
    tiles = [t[0] if t else "" for t in tiles_at_many(pts["lon"], pts["lat"])]
    ref = pts.assign(tile_id=tiles, day=pts["time"].dt.floor("D"))
    want = ref.groupby(["tile_id", "day"])
    assert list(zip(g["tile_id"], g["day"], strict=True)) == list(want.groups)
    assert sorted(np.concatenate(g["rows"].to_list())) == sorted(pts.index)
    for row in g.itertuples():
        sub = want.get_group((row.tile_id, row.day))
        assert row.n_points == len(sub)
        assert sorted(row.rows) == sorted(sub.index)
        assert row.bbox == pytest.approx((sub["lon"].min() - CHIP_MARGIN_DEG,
                                          sub["lat"].min() - CHIP_MARGIN_DEG,
                                          sub["lon"].max() + CHIP_MARGIN_DEG,
                                          sub["lat"].max() + CHIP_MARGIN_DEG))
        assert row.start == sub["time"].min() - pd.Timedelta(hours=6)
        assert row.end == sub["time"].max() + pd.Timedelta(hours=6)


def test_points_without_time_use_the_period_and_failed_rows_are_labels() -> None:
    pts = _points(50).assign(time=pd.NaT)
    with pytest.raises(StacError, match="no time"):
        search_groups(pts, 6)
    a, b = pd.Timestamp("2026-10-01", tz="UTC"), pd.Timestamp("2026-10-03", tz="UTC")
    g = search_groups(pts, 6, a, b)
    assert set(g["start"]) == {a} and set(g["end"]) == {b} and g["day"].isna().all()
    s = SceneSearch(items=[], groups=g, failed=g.assign(error="x").iloc[:1])
    assert sorted(s.failed_rows) == sorted(g["rows"].iloc[0])
    assert all(r in pts.index for r in s.failed_rows)


def test_mixed_timed_and_untimed_points() -> None:
    pts = _points(40)
    pts.loc[pts.index[:10], "time"] = pd.NaT
    g = search_groups(pts, 2, pd.Timestamp("2026-09-01", tz="UTC"),
                      pd.Timestamp("2026-09-02", tz="UTC"))
    assert g["n_points"].sum() == 40
    untimed = g.loc[g["day"].isna()]
    assert untimed["n_points"].sum() == 10
    assert (untimed["start"] == pd.Timestamp("2026-09-01", tz="UTC")).all()
