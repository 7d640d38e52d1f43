"""End-to-end chip job on the embedded world through a real STAC API on 127.0.0.1."""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
from pyproj import Transformer
from rasterio.windows import Window
from rio_cogeo.cogeo import cog_validate
from scipy.ndimage import map_coordinates

from pipelines.chip_job import run_chip_job
from s2xr.config import build_config
from s2xr.demo import StacApiServer
from s2xr.store import open_chips, read_index
from s2xr.store.index import INDEX_COLUMNS
from s2xr.testing import FaultProxy


def make_cfg(root, url, **over):
    data = {"stac": {"api_url": url, "collection": "sentinel-2-l2a", "window_hours": 6},
            "storage": {"root": str(root)}, "demo": {}}
    for k, v in over.items():
        data.setdefault(k, {}).update(v)
    return build_config(data, environ={}, dotenv_path=None)


@pytest.fixture(scope="module")
def counted_run(world, tmp_path_factory):
    """One chip job over every AIS fix of the world, requests counted at the server."""
    root = tmp_path_factory.mktemp("run")
    proxy = FaultProxy("http://127.0.0.1:0")
    with StacApiServer(world.collection_path, world.items_path,
                       public_url=proxy.url) as srv:
        proxy.upstream = srv.url
        with proxy:
            res = run_chip_job(make_cfg(root, proxy.url), world.ais_path)
            counts = dict(proxy.counts)
            again = run_chip_job(make_cfg(root, proxy.url), world.ais_path)
    return res, again, counts, root


def _passed(root):
    idx = read_index(root)
    return idx.loc[idx["qa_pass"]].reset_index(drop=True)


def test_job_produces_gated_chips(counted_run, world):
    res, _, _, root = counted_run
    truth = world.truth()
    assert res.n_chips > 0 and res.n_passed >= 20
    passed = _passed(root)
    assert len(passed) == res.n_passed
    # ships placed outside the rendered window never become chips
    outside = truth.loc[truth.placement == "outside", ["item_id", "mmsi"]]
    merged = passed.merge(outside, left_on=["scene_id", "mmsi"], right_on=["item_id", "mmsi"])
    assert merged.empty
    # ships deliberately under cloud are rejected with a cloud reason
    idx = read_index(root)
    cloudy = truth.loc[truth.under_cloud, ["item_id", "mmsi"]]
    rej = idx.merge(cloudy, left_on=["scene_id", "mmsi"], right_on=["item_id", "mmsi"])
    assert len(rej) >= 2
    assert not rej["qa_pass"].any()
    assert rej["qa_reason"].str.contains("cloud").all()
    # the reprocessed duplicate item is collapsed: only the newer baseline is used
    older, newer = world.item_ids[0], world.item_ids[1]
    assert older.endswith("_0_L2A") and newer.endswith("_1_L2A")
    assert older not in set(idx.scene_id) and newer in set(idx.scene_id)
    assert (idx.loc[idx.scene_id == newer, "processing_baseline"] == "05.12").all()


def test_every_passed_chip_is_centred_on_its_ship(counted_run, world):
    """The hull's brightest NIR pixel lies within 2 px of the chip centre, for every chip."""
    _, _, _, root = counted_run
    truth = world.truth().set_index(["item_id", "mmsi"])
    passed = _passed(root)
    assert len(passed) >= 20
    offsets = []
    for row in passed.itertuples():
        t = truth.loc[(row.scene_id, row.mmsi)]
        with rasterio.open(root / row.path) as src:
            nir = src.read(src.descriptions.index("nir") + 1)
            tr = src.transform
        col = (t.x - tr.c) / tr.a
        rr = (tr.f - t.y) / -tr.e
        reach = int(np.ceil(max(t.to_bow, t.to_stern) / 10)) + 3
        r0, r1 = int(rr) - reach, int(rr) + reach + 1
        c0, c1 = int(col) - reach, int(col) + reach + 1
        win = nir[max(r0, 0):r1, max(c0, 0):c1]
        i, j = np.unravel_index(np.nanargmax(win), win.shape)
        bright = (max(r0, 0) + i, max(c0, 0) + j)
        offsets.append(np.hypot(bright[0] - 128, bright[1] - 128))
    offsets = np.array(offsets)
    assert (offsets <= 2.0).all(), f"off-centre chips: {np.sort(offsets)[-5:]}"
    # …including chips whose nearest AIS fix is a minute or more from the sensing time
    far = passed["dt_seconds"].abs() >= 60
    assert far.sum() >= 3 and (offsets[far.to_numpy()] <= 2.0).all()


def test_reflectance_equals_direct_rasterio_reads(counted_run, world):
    _, _, _, root = counted_run
    passed = _passed(root)
    items = {it["id"]: it for it in world.items()}
    odd = passed.loc[[(json.loads((root / p).with_suffix(".json").read_text())["chip"]["row0"]
                       % 2 == 1) for p in passed["path"]]]
    sample = pd.concat([passed.head(3), odd.head(3)])
    assert len(odd) >= 1, "need a chip on an odd 10 m row to test 20 m alignment"
    for row in sample.itertuples():
        meta = json.loads((root / row.path).with_suffix(".json").read_text())
        r0, c0 = meta["chip"]["row0"], meta["chip"]["col0"]
        with rasterio.open(root / row.path) as chip:
            bands = list(chip.descriptions)
            data = chip.read()
        hrefs = items[row.scene_id]["assets"]
        for name in ("blue", "nir"):
            with rasterio.open(hrefs[name]["href"]) as src:
                dn = src.read(1, window=Window(c0, r0, 256, 256)).astype(float)
            expect = np.where(dn == 0, np.nan, dn * 0.0001 - 0.1)
            np.testing.assert_allclose(data[bands.index(name)], expect, rtol=0, atol=1e-6)
        # 20 m band: bilinear sample of the 20 m grid at each 10 m pixel centre
        with rasterio.open(hrefs["swir16"]["href"]) as src:
            s20 = src.read(1).astype(float) * 0.0001 - 0.1
        ii, jj = np.mgrid[0:256, 0:256]
        src_r = (r0 + ii + 0.5) / 2 - 0.5
        src_c = (c0 + jj + 0.5) / 2 - 0.5
        expect = map_coordinates(s20, [src_r, src_c], order=1, mode="nearest")
        got = data[bands.index("swir16")]
        inner = (slice(2, -2), slice(2, -2))
        np.testing.assert_allclose(got[inner], expect[inner], atol=2e-4)
        # SCL (nearest) from the 20 m pixel that contains each 10 m pixel centre
        with rasterio.open(hrefs["scl"]["href"]) as src:
            scl20 = src.read(1)
        cube = open_chips(root)
        k = int(np.flatnonzero(cube.chip_id.values == row.chip_id)[0])
        scl = cube.scl.isel(chip=k).values
        np.testing.assert_array_equal(scl, scl20[(r0 + ii) // 2, (c0 + jj) // 2])


def test_stores_agree_and_validate(counted_run):
    _, _, _, root = counted_run
    idx = gpd.read_parquet(root / "indexes" / "tiles.parquet")
    assert set(INDEX_COLUMNS) <= set(idx.columns)
    assert idx.crs.to_epsg() == 4326 and idx.geometry.is_valid.all()
    assert idx["chip_id"].is_unique
    passed = idx.loc[idx.qa_pass]
    cube = open_chips(root)
    assert sorted(cube.chip_id.values) == sorted(passed.chip_id)
    assert list(cube.reflectance.dims) == ["chip", "band", "y", "x"]
    assert cube.reflectance.dtype == np.float32 and cube.scl.dtype == np.uint8
    for row in passed.head(8).itertuples():
        tif = root / row.path
        ok, errors, _ = cog_validate(str(tif))
        assert ok, errors
        k = int(np.flatnonzero(cube.chip_id.values == row.chip_id)[0])
        with rasterio.open(tif) as src:
            np.testing.assert_array_equal(src.read(), cube.reflectance.isel(chip=k).values)
            assert list(src.descriptions) == list(cube.band.values)
            assert src.crs.to_epsg() == row.epsg
        side = json.loads(tif.with_suffix(".json").read_text())
        for key in ("item_id", "collection", "asset_hrefs", "processing_baseline",
                    "scale_offset", "ais_time", "sensing_time", "dt_seconds"):
            assert key in side, key
        assert side["scale_offset"]["blue"] == [0.0001, -0.1]
        assert tif.with_suffix(".jpg").read_bytes()[:2] == b"\xff\xd8"
        gj = json.loads(tif.with_suffix(".geojson").read_text())
        assert gj["geometry"]["type"] == "Polygon"
        assert str(row.path).startswith(f"chips/{row.split}/{row.mmsi}/")
    for day in pd.to_datetime(idx.scene_datetime).dt.strftime("%Y%m%d").unique():
        fc = json.loads((root / "indexes" / f"tiles_{day}.geojson").read_text())
        assert len(fc["features"]) == int(
            (pd.to_datetime(idx.scene_datetime).dt.strftime("%Y%m%d") == day).sum())


def test_one_search_per_tile_and_day(counted_run, world):
    res, _, counts, _ = counted_run
    ais = pd.read_csv(world.ais_path)
    assert len(ais) > 1000  # many points ...
    from s2xr.grid import tiles_at_many

    tiles = [t[0] for t in tiles_at_many(ais.lon.to_numpy(), ais.lat.to_numpy())]
    tile_days = {(t, d) for t, d in zip(tiles, ais.time.str[:10], strict=True)}
    # ... but at most one search per tile and day, and pages fit in one request here
    assert 1 <= counts.get("/search", 0) <= len(tile_days)
    assert counts.get("/search", 0) == res.n_searches


def test_rerun_adds_nothing(counted_run):
    res, again, _, root = counted_run
    assert again.n_chips == 0
    assert again.n_skipped_existing == res.n_planned
    assert again.index_rows == res.index_rows
    assert open_chips(root).sizes["chip"] == res.n_passed


def test_ais_positions_are_at_sensing_time(counted_run, world):
    """dt_seconds is the gap to the nearest fix; positions match the truth within 15 m."""
    _, _, _, root = counted_run
    idx = read_index(root)
    truth = world.truth().set_index(["item_id", "mmsi"])
    t = truth.loc[list(zip(idx.scene_id, idx.mmsi, strict=True))]
    fwd = Transformer.from_crs(4326, int(idx.epsg.iloc[0]), always_xy=True)
    x, y = fwd.transform(idx.lon.to_numpy(), idx.lat.to_numpy())
    err = np.hypot(x - t.x.to_numpy(), y - t.y.to_numpy())
    assert (err < 15).all(), err.max()
    assert idx.dt_seconds.abs().max() <= 120 + 1e-6


@pytest.mark.slow
def test_stac_engine_decides_where_the_pixels_come_from(counted_run, world, tmp_path):
    """``stac.engine`` is not decorative: the stackstac engine's chips come from GDAL's warp
    (20 m bands within half a DN of s2xr's loader, but not bit-equal)."""
    _, _, _, root = counted_run
    with StacApiServer(world.collection_path, world.items_path) as srv:
        run_chip_job(make_cfg(tmp_path, srv.url, stac={"engine": "stackstac"}),
                     world.ais_path, max_chips=4)
    cube, ref = open_chips(tmp_path), open_chips(root)
    assert cube.attrs["stack_engine"] == "stackstac" and ref.attrs["stack_engine"] == "s2xr"
    ids = [c for c in cube.chip_id.values if c in set(ref.chip_id.values)]
    assert ids
    a = cube.set_index(chip="chip_id").sel(chip=ids).reflectance
    b = ref.set_index(chip="chip_id").sel(chip=ids).reflectance
    ten = ["blue", "green", "red", "nir"]
    np.testing.assert_array_equal(a.sel(band=ten).values, b.sel(band=ten).values)
    twenty = a.sel(band=["swir16", "swir22"]).values, b.sel(band=["swir16", "swir22"]).values
    np.testing.assert_allclose(*twenty, atol=0.5e-4 + 1e-7)
    assert not np.array_equal(*twenty)
