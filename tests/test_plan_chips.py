"""plan_chips on synthetic UTM tiles: windows, rejects, item choice, identity and order.

No I/O: the items table is built by hand (the columns of ``s2xr.scenes.items_table``) and the
ships are placed in UTM metres, then handed to the planner as lon/lat like AIS positions.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pyproj import Transformer

from s2xr.chips import chip_id, plan_chips
from s2xr.chips.plan import PLAN_COLUMNS, plan_digest
from s2xr.config import ChipSpec

EPSG = 32630
X0, Y0, RES, TILE_PX = 399960.0, 4000020.0, 10.0, 1098
ITEM_COLUMNS = ["item_id", "collection", "datetime", "tile_id", "epsg", "platform", "satellite",
                "datatake", "processing_baseline", "sequence", "cloud_cover", "x0", "y0", "res",
                "height", "width", "hrefs"]
OUTSIDE = "position at sensing time is outside the item's raster"
_TO_LONLAT = Transformer.from_crs(EPSG, 4326, always_xy=True)


def item(item_id: str, *, x0: float = X0, y0: float = Y0, height: int = TILE_PX,
         width: int = TILE_PX, datatake: str = "DT1", when: str = "2026-09-30T11:06:21Z",
         cloud: float = 5.0, res: float = RES) -> dict:
    return {"item_id": item_id, "collection": "sentinel-2-l2a", "datetime": pd.Timestamp(when),
            "tile_id": "30STE", "epsg": EPSG, "platform": "sentinel-2a", "satellite": "S2A",
            "datatake": datatake, "processing_baseline": "05.11", "sequence": 0,
            "cloud_cover": cloud, "x0": x0, "y0": y0, "res": res, "height": height,
            "width": width, "hrefs": {}}


def items(*rows: dict) -> pd.DataFrame:
    return pd.DataFrame(list(rows), columns=ITEM_COLUMNS)


def xy_of(row: float, col: float, *, x0: float = X0, y0: float = Y0) -> tuple[float, float]:
    """UTM metres of a fractional pixel position (row/col measured from the top-left edge)."""
    return x0 + col * RES, y0 - row * RES


def target(mmsi: int, item_id: str, x: float, y: float, key: str | None = None, **extra
           ) -> dict:
    lon, lat = _TO_LONLAT.transform(x, y)
    return {"mmsi": mmsi, "item_id": item_id, "target_key": key or f"t{mmsi}", "lat": lat,
            "lon": lon, **extra}


def targets(*rows: dict) -> pd.DataFrame:
    return pd.DataFrame(list(rows))


# ------------------------------------------------------------------------------ windows
@pytest.mark.parametrize("size", [32, 33, 256])
def test_window_is_centred_on_the_ships_pixel(size):
    # (row, col) of the ship's pixel and where inside it the ship is (metres from its corner)
    ships = [(549, 549, 5.0, 5.0), (300, 700, 0.3, 9.7), (800, 128, 9.9, 0.05),
             (512, 511, 0.5, 0.5), (200, 201, 7.25, 2.5)]
    t = targets(*[target(100 + k, "A", X0 + c * RES + dx, Y0 - r * RES - dy)
                  for k, (r, c, dy, dx) in enumerate(ships)])
    res = plan_chips(t, items(item("A")), ChipSpec(size=size))
    assert res.rejects.empty
    plan = res.plan.set_index("mmsi").loc[[100 + k for k in range(len(ships))]]
    rows = np.array([s[0] for s in ships])
    cols = np.array([s[1] for s in ships])
    half = size // 2
    np.testing.assert_array_equal(plan["row0"], rows - half)
    np.testing.assert_array_equal(plan["col0"], cols - half)
    np.testing.assert_array_equal(plan["x_left"], X0 + (cols - half) * RES)
    np.testing.assert_array_equal(plan["y_top"], Y0 - (rows - half) * RES)
    # the ship's projected position is kept and lies in the chip's centre pixel
    xs = np.array([X0 + c * RES + dx for _, c, _, dx in ships])
    ys = np.array([Y0 - r * RES - dy for r, _, dy, _ in ships])
    np.testing.assert_allclose(plan["x"], xs, atol=1e-6)
    np.testing.assert_allclose(plan["y"], ys, atol=1e-6)
    cx = np.floor((plan["x"] - plan["x_left"]) / RES).to_numpy()
    cy = np.floor((plan["y_top"] - plan["y"]) / RES).to_numpy()
    np.testing.assert_array_equal(cx, half)
    np.testing.assert_array_equal(cy, half)
    edge = np.minimum.reduce([rows - half, cols - half, TILE_PX - (rows - half) - size,
                              TILE_PX - (cols - half) - size])
    np.testing.assert_array_equal(plan["edge_px"], edge)
    np.testing.assert_array_equal(plan["full"], edge >= 0)


def test_windows_are_on_the_items_pixel_grid():
    rng = np.random.default_rng(7)
    r = rng.uniform(0, TILE_PX, 200)
    c = rng.uniform(0, TILE_PX, 200)
    t = targets(*[target(200_000_000 + k, "A", *xy_of(r[k], c[k])) for k in range(200)])
    plan = plan_chips(t, items(item("A")), ChipSpec(size=64)).plan
    assert len(plan) == 200
    for name, origin, sign in (("x_left", X0, 1), ("y_top", Y0, -1)):
        steps = sign * (plan[name] - origin) / RES
        np.testing.assert_array_equal(steps, np.round(steps))
    np.testing.assert_array_equal((plan["x_left"] - X0) / RES, plan["col0"])
    np.testing.assert_array_equal((Y0 - plan["y_top"]) / RES, plan["row0"])


def test_size_and_res_columns_come_from_the_spec():
    t = targets(target(1, "A", *xy_of(400.5, 600.5)), target(2, "A", *xy_of(10.5, 20.5)))
    plan = plan_chips(t, items(item("A")), ChipSpec(size=48)).plan
    assert plan["size"].tolist() == [48, 48]
    assert plan["res"].tolist() == [10.0, 10.0]
    assert sorted(plan["row0"]) == [10 - 24, 400 - 24]
    assert list(plan.columns[:len(PLAN_COLUMNS)]) == PLAN_COLUMNS


@pytest.mark.parametrize(("spec_res", "item_res"), [(20.0, 10.0), (10.0, 20.0), (5.0, 10.0)])
def test_chip_resolution_other_than_the_items_raises(spec_res, item_res):
    t = targets(target(1, "A", *xy_of(100.5, 100.5)))
    with pytest.raises(ValueError, match=r"chip\.resolution"):
        plan_chips(t, items(item("A", res=item_res)), ChipSpec(resolution=spec_res))


# ------------------------------------------------------------------------------ rejects
@pytest.mark.parametrize(("row", "col"), [(-0.5, 500.0), (500.0, -0.01), (TILE_PX + 0.01, 10.0),
                                          (10.0, TILE_PX + 0.5), (-3.0, -3.0)])
def test_a_ship_outside_the_raster_is_a_reject_with_its_reason(row, col):
    t = targets(target(11, "A", *xy_of(row, col)), target(12, "A", *xy_of(0.5, 0.5)))
    res = plan_chips(t, items(item("A")), ChipSpec(size=32))
    assert res.plan["mmsi"].tolist() == [12]
    assert res.rejects[["mmsi", "item_id", "reason"]].to_dict("records") == [
        {"mmsi": 11, "item_id": "A", "reason": OUTSIDE}]


def test_the_last_pixel_row_and_column_are_inside():
    t = targets(target(1, "A", *xy_of(TILE_PX - 0.01, TILE_PX - 0.01)),
                target(2, "A", *xy_of(0.01, 0.01)))
    res = plan_chips(t, items(item("A")), ChipSpec(size=32))
    assert res.rejects.empty
    p = res.plan.set_index("mmsi")
    assert (p.loc[1, "row0"], p.loc[1, "col0"]) == (TILE_PX - 1 - 16, TILE_PX - 1 - 16)
    assert (p.loc[2, "row0"], p.loc[2, "col0"]) == (-16, -16)
    assert not p["full"].any()


def test_targets_without_position_are_rejects():
    t = targets(target(1, "A", *xy_of(100.5, 100.5)), target(2, "A", *xy_of(200.5, 200.5)),
                target(3, "A", *xy_of(300.5, 300.5)))
    t.loc[1, "lat"] = np.nan
    t.loc[2, "lon"] = np.nan
    res = plan_chips(t, items(item("A")), ChipSpec(size=32))
    assert res.plan["mmsi"].tolist() == [1]
    assert sorted(res.rejects["mmsi"]) == [2, 3]
    assert set(res.rejects["reason"]) == {"no position at sensing time"}
    assert set(res.rejects["item_id"]) == {"A"}


def test_a_no_position_reject_keeps_the_targets_own_reason():
    t = targets(target(1, "A", *xy_of(100.5, 100.5), reason=""),
                target(2, "A", np.nan, np.nan, reason="gap 3600 s > 1800 s"))
    res = plan_chips(t, items(item("A")), ChipSpec(size=32))
    assert res.plan["mmsi"].tolist() == [1]
    assert res.rejects[["mmsi", "reason"]].to_dict("records") == [
        {"mmsi": 2, "reason": "gap 3600 s > 1800 s"}]
    assert "reason" not in res.plan.columns and "target_key" not in res.plan.columns


def test_only_rejects_give_an_empty_plan_with_the_plan_columns():
    t = targets(target(1, "A", *xy_of(-5.0, 10.0)), target(2, "A", *xy_of(10.0, 10.0)))
    t.loc[1, "lat"] = np.nan
    res = plan_chips(t, items(item("A")), ChipSpec(size=32))
    assert res.plan.empty and list(res.plan.columns) == PLAN_COLUMNS
    assert sorted(res.rejects["reason"]) == sorted([OUTSIDE, "no position at sensing time"])
    res = plan_chips(t.iloc[1:], items(item("A")), ChipSpec(size=32))
    assert res.plan.empty and list(res.plan.columns) == PLAN_COLUMNS
    assert res.rejects["reason"].tolist() == ["no position at sensing time"]


# -------------------------------------------------------------------------- item choice
# B overlaps A: its column 0 is A's column 600 (same datatake: neighbouring tiles' overlap)
B_X0 = X0 + 600 * RES


def _two_tiles() -> pd.DataFrame:
    return items(item("A"), item("B", x0=B_X0))


def test_a_partial_chip_loses_to_an_item_holding_it_whole():
    # A's right edge: A's window runs off A (col0 1074 + 32 > 1098); B holds it whole
    x, y = xy_of(549.5, 1090.5)
    t = targets(target(1, "A", x, y), target(1, "B", x, y))
    plan = plan_chips(t, _two_tiles(), ChipSpec(size=32)).plan
    assert len(plan) == 1
    p = plan.iloc[0]
    assert p["item_id"] == "B" and bool(p["full"])
    assert (p["row0"], p["col0"]) == (549 - 16, 490 - 16)
    assert p["x_left"] == B_X0 + (490 - 16) * RES


def test_a_partial_chip_is_kept_when_no_item_holds_it_whole():
    x, y = xy_of(549.5, 5.5)  # 5 px from A's left edge; B starts 600 px further east
    t = targets(target(1, "A", x, y), target(1, "B", x, y))
    res = plan_chips(t, _two_tiles(), ChipSpec(size=32))
    p = res.plan.iloc[0]
    assert len(res.plan) == 1 and p["item_id"] == "A"
    assert not p["full"] and p["edge_px"] == 5 - 16 and p["col0"] == -11
    # the ship is outside B's raster: that candidate is a reject, the chip is not
    assert res.rejects[["mmsi", "item_id", "reason"]].to_dict("records") == [
        {"mmsi": 1, "item_id": "B", "reason": OUTSIDE}]


def test_among_whole_chips_the_one_farthest_from_an_edge_is_kept():
    x, y = xy_of(549.5, 700.5)  # A: 382 px from its right edge; B: 84 px from its left
    for order in (["A", "B"], ["B", "A"]):
        t = targets(*[target(1, i, x, y) for i in order])
        p = plan_chips(t, _two_tiles(), ChipSpec(size=32)).plan
        assert p["item_id"].tolist() == ["A"] and p["edge_px"].tolist() == [382]


def test_one_chip_per_target_and_datatake():
    tiles = items(item("A"), item("B", x0=B_X0),
                  item("C", datatake="DT2", when="2026-10-05T11:06:19Z"))
    x, y = xy_of(549.5, 700.5)
    rows = [target(1, i, x, y) for i in ("A", "B", "C")]
    rows += [target(1, i, x + 300, y, key="t1-later") for i in ("A", "B", "C")]
    rows += [target(2, i, x - 50, y + 50) for i in ("A", "B", "C")]
    plan = plan_chips(targets(*rows), tiles, ChipSpec(size=32)).plan
    assert len(plan) == 6
    got = plan.groupby(["mmsi", "datatake"]).size()
    assert got.loc[(1, "DT1")] == 2 and got.loc[(1, "DT2")] == 2
    assert got.loc[(2, "DT1")] == 1 and got.loc[(2, "DT2")] == 1
    assert plan["chip_id"].is_unique


def test_a_static_point_gets_one_chip_overall_least_cloud_then_newest():
    tiles = items(item("A", cloud=30.0),
                  item("C", datatake="DT2", when="2026-10-05T11:06:19Z", cloud=2.0),
                  item("D", datatake="DT3", when="2026-10-10T11:06:19Z", cloud=2.0))
    x, y = xy_of(549.5, 549.5)
    t = targets(*[target(7, i, x, y, key="p7") for i in ("A", "C", "D")],
                *[target(8, i, x, y) for i in ("A", "C", "D")])
    plan = plan_chips(t, tiles, ChipSpec(size=32)).plan
    assert plan.loc[plan["mmsi"] == 7, "item_id"].tolist() == ["D"]
    assert sorted(plan.loc[plan["mmsi"] == 8, "item_id"]) == ["A", "C", "D"]


# ---------------------------------------------------------------------- identity, order
def _many(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(n):
        r, c = rng.uniform(0, TILE_PX, 2)
        rows.append(target(244_000_000 + k, "A", *xy_of(r, c)))
        rows.append(target(244_000_000 + k, "Z", *xy_of(r, c, x0=X0 + 50_000), key=f"z{k}"))
    return targets(*rows)


def _two_items() -> pd.DataFrame:
    return items(item("Z", x0=X0 + 50_000, datatake="DT9", when="2026-10-02T11:00:00Z"),
                 item("A"))


def test_chip_id_is_stable_and_made_of_ship_time_and_position():
    t = _many(40, seed=3)
    plan = plan_chips(t, _two_items(), ChipSpec(size=64)).plan
    assert len(plan) == 80 and plan["chip_id"].str.fullmatch(r"[0-9a-f]{16}").all()
    expect = [chip_id(m, d, la, lo) for m, d, la, lo in
              plan[["mmsi", "scene_datetime", "lat", "lon"]].itertuples(index=False)]
    assert plan["chip_id"].tolist() == expect
    shuffled = t.sample(frac=1.0, random_state=11).reset_index(drop=True)
    again = plan_chips(shuffled, _two_items().iloc[::-1], ChipSpec(size=64)).plan
    pd.testing.assert_frame_equal(again, plan)
    assert plan_digest(again) == plan_digest(plan)
    # a different chip size keeps the ids (they name the ship's observation, not a window)
    other = plan_chips(t, _two_items(), ChipSpec(size=32)).plan
    assert set(other["chip_id"]) == set(plan["chip_id"])
    # another scene time is another chip
    later = _two_items().assign(datetime=lambda d: d["datetime"] + pd.Timedelta("1s"))
    assert not set(plan_chips(t, later, ChipSpec(size=64)).plan["chip_id"]) & set(
        plan["chip_id"])


def test_plan_is_sorted_for_read_locality():
    plan = plan_chips(_many(150, seed=5), _two_items(), ChipSpec(size=64)).plan
    key = pd.DataFrame({"item": plan["item_id"], "brow": plan["row0"] // 512,
                        "bcol": plan["col0"] // 512, "row0": plan["row0"],
                        "col0": plan["col0"]})
    expect = key.sort_values(list(key.columns), kind="stable")
    assert list(expect.index) == list(range(len(plan)))
    assert plan["item_id"].iloc[0] == "A" and plan["item_id"].iloc[-1] == "Z"
    # more than one 512-px block per item, so the block order is really exercised
    assert key.groupby("item")[["brow", "bcol"]].nunique().min().min() >= 2


def test_ais_columns_are_carried_and_scene_columns_added():
    x, y = xy_of(549.5, 549.5)
    t = targets(target(9, "A", x, y, ais_time=pd.Timestamp("2026-09-30T11:05:00Z"),
                       gap_s=81.0, method="interpolated", uncertainty_m=12.5,
                       ship_name="NORTHERN STAR", length=120.0))
    p = plan_chips(t, items(item("A", cloud=3.5)), ChipSpec(size=32)).plan.iloc[0]
    assert p["ship_name"] == "NORTHERN STAR" and p["length"] == 120.0
    assert p["dt_seconds"] == 81.0 and p["method"] == "interpolated"
    assert p["uncertainty_m"] == 12.5 and p["cloud_cover"] == 3.5
    assert p["scene_datetime"] == pd.Timestamp("2026-09-30T11:06:21Z")
    assert (p["tile_id"], p["epsg"], p["datatake"]) == ("30STE", EPSG, "DT1")
    # without the optional columns, a static default
    p = plan_chips(targets(target(9, "A", x, y)), items(item("A")),
                   ChipSpec(size=32)).plan.iloc[0]
    assert p["method"] == "static" and pd.isna(p["ais_time"]) and pd.isna(p["dt_seconds"])
