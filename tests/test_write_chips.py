"""write_chips of a few chips cut from an in-memory stack: cube, per-chip files, index.

A 120 × 120 px scene (10 m, EPSG:32630) with noisy open water and a cloud in its south-east
corner; four ships: two in open water, one 3 px from the north-west corner (its chip runs off
the scene: NaN there) and one under the cloud (rejected by the gate).
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import dask
import numpy as np
import pandas as pd
import pytest
import rasterio
import shapely.geometry
import xarray as xr
from affine import Affine
from PIL import Image
from pyproj import Transformer

from s2xr.chips import cut_chips, plan_chips
from s2xr.config import ChipSpec, GateConfig, StorageConfig
from s2xr.gate import gate_chips
from s2xr.store import open_chips, read_index, write_chips
from s2xr.store.index import INDEX_COLUMNS

EPSG, X0, Y0, N, RES, SIZE = 32630, 399960.0, 4000020.0, 120, 10.0, 16
BANDS = ("blue", "green", "red", "nir")
WHEN = pd.Timestamp("2026-09-30T11:06:21Z")
GATE = GateConfig(min_valid=0.3)  # the corner chip is 11 × 11 of 16 × 16 px valid
SPEC = ChipSpec(size=SIZE, bands=BANDS, include_swir=False)
# mmsi → (row, col, split); 224000004 sits under the cloud
SHIPS = {224000001: (20, 20, "train"), 224000002: (50, 60, "val"),
         224000003: (3, 3, "test"), 224000004: (100, 100, "train")}
MORE_SHIPS = {224000005: (30, 90, "train"), 224000006: (70, 30, "val")}
PASSED = {224000001, 224000002, 224000003}
ITEM_META = {"A": {"hrefs": {"blue": "s3://bucket/A/B02.tif"},
                   "scale_offset": {"blue": [0.0001, -0.1]}, "resampling": "bilinear"}}


def make_stack() -> xr.DataArray:
    rng = np.random.default_rng(20260930)
    data = np.empty((1, len(BANDS) + 1, N, N), np.float32)
    for b, (lo, hi) in enumerate([(0.01, 0.05), (0.06, 0.10), (0.01, 0.05), (0.0, 0.03)]):
        data[0, b] = rng.uniform(lo, hi, (N, N))
    data[0, -1] = 6
    data[0, -1, 80:, 80:] = 9
    return xr.DataArray(
        data, dims=("time", "band", "y", "x"),
        coords={"time": [WHEN.tz_localize(None).to_datetime64()], "id": ("time", ["A"]),
                "band": [*BANDS, "scl"], "x": X0 + RES / 2 + RES * np.arange(N),
                "y": Y0 - RES / 2 - RES * np.arange(N)})


STACK = make_stack()


def make_plan(ships: dict[int, tuple[int, int, str]]) -> pd.DataFrame:
    item = {"item_id": "A", "collection": "sentinel-2-l2a", "datetime": WHEN,
            "tile_id": "30STE", "epsg": EPSG, "platform": "sentinel-2a", "satellite": "S2A",
            "datatake": "DT1", "processing_baseline": "05.11", "sequence": 0,
            "cloud_cover": 4.0, "x0": X0, "y0": Y0, "res": RES, "height": N, "width": N,
            "hrefs": {}}
    to_ll = Transformer.from_crs(EPSG, 4326, always_xy=True)
    rows = []
    for mmsi, (r, c, _) in ships.items():
        lon, lat = to_ll.transform(X0 + RES * (c + 0.5), Y0 - RES * (r + 0.5))
        rows.append({"mmsi": mmsi, "item_id": "A", "target_key": f"t{mmsi}", "lat": lat,
                     "lon": lon, "ais_time": WHEN - pd.Timedelta("40s"), "gap_s": 40.0,
                     "method": "interpolated", "uncertainty_m": 8.0, "ship_name": f"S{mmsi}"})
    plan = plan_chips(pd.DataFrame(rows), pd.DataFrame([item]), SPEC).plan
    assert len(plan) == len(ships)
    return plan.assign(split=plan["mmsi"].map({m: s for m, (_, _, s) in ships.items()}))


def write(root: Path, ships=SHIPS, cfg: StorageConfig | None = None, **kw):
    plan = make_plan(ships)
    gated = gate_chips(cut_chips(STACK, plan, SPEC), GATE)
    with dask.config.set(scheduler="synchronous"):  # tiny graphs: threads only add overhead
        summary = write_chips(gated, plan, cfg or StorageConfig(root=root), GATE,
                              item_meta=ITEM_META, **kw)
    return plan, summary


def expected_pixels(row: pd.Series) -> np.ndarray:
    """The chip's reflectance straight from the stack (NaN off the scene)."""
    out = np.full((len(BANDS), SIZE, SIZE), np.nan, np.float32)
    r0, c0 = int(row["row0"]), int(row["col0"])
    ya, yz, xa, xz = max(r0, 0), min(r0 + SIZE, N), max(c0, 0), min(c0 + SIZE, N)
    out[:, ya - r0:yz - r0, xa - c0:xz - c0] = STACK.values[0, :len(BANDS), ya:yz, xa:xz]
    return out


def stem(root: Path, row: pd.Series) -> Path:
    return (root / "chips" / row["split"] / str(row["mmsi"]) / f"{WHEN:%Y%m%d}" /
            row["chip_id"])


def snapshot(root: Path) -> dict[str, tuple[int, str]]:
    """Every file under ``root``: (mtime_ns, sha1 of its bytes)."""
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns,
                                      hashlib.sha1(p.read_bytes()).hexdigest())
            for p in sorted(root.rglob("*")) if p.is_file()}


def open_cube(root: Path) -> xr.Dataset:
    """The committed chips (``open_chips(root)``), after checking the raw cube opens with
    ``xr.open_zarr`` without a warning (its consolidated metadata is current)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        xr.open_zarr(root / "chips.zarr")
        return open_chips(root).load()


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("dataset")
    ticks: list[int] = []
    plan, summary = write(root, block_size=3, progress=ticks.append)
    return root, plan.set_index("chip_id", drop=False), summary, ticks


# ----------------------------------------------------------------------------- one write
def test_summary_counts(written):
    _, plan, summary, ticks = written
    assert (summary.n_chips, summary.n_passed, summary.n_rejected) == (4, 3, 1)
    assert ticks == [3, 1]  # one call per block of block_size chips
    assert sorted(summary.index["chip_id"]) == sorted(plan["chip_id"])


def test_cube_holds_the_passed_chips_and_opens_without_a_warning(written):
    root, plan, _, _ = written
    cube = open_cube(root)  # consolidated metadata: no warning
    ids = [str(c) for c in cube["chip_id"].values]
    assert sorted(plan.loc[ids, "mmsi"]) == sorted(PASSED)
    assert cube.sizes == {"chip": 3, "band": 4, "y": SIZE, "x": SIZE, "affine": 6}
    assert [str(b) for b in cube["band"].values] == list(BANDS)
    assert cube["qa_pass"].values.all()
    assert [str(s) for s in cube["split"].values] == plan.loc[ids, "split"].tolist()
    for k, cid in enumerate(ids):
        np.testing.assert_array_equal(cube["reflectance"].values[k],
                                      expected_pixels(plan.loc[cid]))
        np.testing.assert_array_equal(cube["transform"].values[k], [
            RES, 0, plan.loc[cid, "x_left"], 0, -RES, plan.loc[cid, "y_top"]])
    corner = ids.index(plan.index[plan["mmsi"] == 224000003][0])
    assert np.isnan(cube["reflectance"].values[corner, :, :5, :]).all()
    assert (cube["scl"].values[corner, :5, :] == 0).all()
    np.testing.assert_allclose(cube["valid_frac"].values[corner], 121 / 256, rtol=1e-6)


def test_each_batch_writes_its_own_cube_region_and_readers_see_no_holes(written):
    """Batches of 3 chips own regions of 8 slots (whole chunks): 2 batches reserve 16 slots;
    the unused ones are holes (chip_id "") that xr.open_zarr shows and open_chips drops."""
    root, plan, _, _ = written
    raw = xr.open_zarr(root / "chips.zarr")
    ids = np.array(raw["chip_id"].values.tolist(), dtype=object)
    assert len(ids) == 16 and raw.attrs["s2xr_slots_per_batch"] == 8
    first = int(plan["mmsi"].iloc[:3].isin(PASSED).sum())  # passed chips of batch 0
    assert (ids[:8] != "").sum() == first and (ids[8:] != "").sum() == 3 - first
    assert (ids[:first] != "").all() and (ids[8:8 + 3 - first] != "").all()  # from slot 0
    assert raw["chip_id"].encoding["chunks"] == (8,)
    assert raw["reflectance"].encoding["chunks"][0] == 8
    assert sorted(open_chips(root)["chip_id"].values.tolist()) == sorted(ids[ids != ""])


def test_each_passed_chip_has_a_geotiff_equal_to_the_cube(written):
    root, plan, _, _ = written
    cube = open_cube(root)
    for k, cid in enumerate(str(c) for c in cube["chip_id"].values):
        row = plan.loc[cid]
        with rasterio.open(stem(root, row).with_suffix(".tif")) as src:
            pixels = src.read()
            assert src.crs.to_epsg() == EPSG
            assert src.transform == Affine(RES, 0, row["x_left"], 0, -RES, row["y_top"])
            assert src.descriptions == BANDS
            assert src.dtypes == ("float32",) * len(BANDS)
            assert src.tags()["chip_id"] == cid
            assert src.tags()["mmsi"] == str(row["mmsi"])
        np.testing.assert_array_equal(pixels, cube["reflectance"].values[k])


def test_each_passed_chip_has_geojson_json_and_quicklook(written):
    root, plan, _, _ = written
    to_utm = Transformer.from_crs(4326, EPSG, always_xy=True)
    for cid, row in plan.loc[plan["mmsi"].isin(PASSED)].iterrows():
        s = stem(root, row)
        feature = json.loads(s.with_suffix(".geojson").read_text())
        assert feature["type"] == "Feature"
        assert feature["properties"]["chip_id"] == cid
        footprint = shapely.geometry.shape(feature["geometry"])
        assert footprint.contains(shapely.geometry.Point(row["lon"], row["lat"]))
        # the footprint is the chip's window on the UTM grid
        xs, ys = to_utm.transform(*np.asarray(footprint.exterior.coords.xy))
        np.testing.assert_allclose(
            [xs.min(), ys.min(), xs.max(), ys.max()],
            [row["x_left"], row["y_top"] - SIZE * RES, row["x_left"] + SIZE * RES,
             row["y_top"]], atol=1e-6)
        prov = json.loads(s.with_suffix(".json").read_text())
        assert (prov["chip_id"], prov["mmsi"], prov["item_id"]) == (cid, row["mmsi"], "A")
        assert prov["chip"] == {"size": SIZE, "resolution_m": RES, "x_left": row["x_left"],
                                "y_top": row["y_top"], "row0": int(row["row0"]),
                                "col0": int(row["col0"])}
        assert prov["split"] == row["split"] and prov["position_method"] == "interpolated"
        assert prov["dt_seconds"] == 40.0 and prov["ship"]["ship_name"] == f"S{row['mmsi']}"
        assert prov["asset_hrefs"] == ITEM_META["A"]["hrefs"]
        assert prov["bands"] == list(BANDS)
        assert pd.Timestamp(prov["sensing_time"]) == WHEN
        assert prov["qa"]["qa_cloud_frac"] == 0.0 and prov["qa"]["valid_frac"] > 0.3
        with Image.open(s.with_suffix(".jpg")) as im:
            assert (im.format, im.mode, im.size) == ("JPEG", "RGB", (SIZE, SIZE))


def test_a_rejected_chip_has_an_index_row_and_no_files(written):
    root, plan, summary, _ = written
    row = plan.loc[plan["mmsi"] == 224000004].iloc[0]
    assert not list(stem(root, row).parent.glob(f"{row['chip_id']}*"))
    idx = summary.index.set_index("chip_id")
    assert not idx.loc[row["chip_id"], "qa_pass"]
    assert idx.loc[row["chip_id"], "path"] is None
    assert idx.loc[row["chip_id"], "qa_reason"].startswith("cloud 1.00>0.05")


def test_index_rows(written):
    root, plan, summary, _ = written
    idx = read_index(root)
    assert list(idx.columns) == INDEX_COLUMNS and len(idx) == 4
    assert idx.crs.to_epsg() == 4326
    idx = idx.set_index("chip_id")
    mine = summary.index.set_index("chip_id").loc[idx.index]
    for col in ("mmsi", "qa_pass", "qa_reason", "qa_cloud_frac", "valid_frac", "split"):
        assert mine[col].tolist() == idx[col].tolist(), col
    for cid, row in plan.iterrows():
        r = idx.loc[cid]
        assert r["mmsi"] == row["mmsi"] and r["split"] == row["split"]
        assert r["scene_id"] == "A" and r["tile_id"] == "30STE" and r["epsg"] == EPSG
        assert r["bands"] == ",".join(BANDS) and not r["has_swir"]
        assert r["cloud_cover"] == 4.0 and r["position_method"] == "interpolated"
        assert r["scene_datetime"] == WHEN
        assert r["geometry"].contains(shapely.geometry.Point(row["lon"], row["lat"]))
        passed = row["mmsi"] in PASSED
        assert bool(r["qa_pass"]) is passed and (r["qa_reason"] == "") is passed
        if passed:
            assert r["path"] == str(stem(root, row).with_suffix(".tif").relative_to(root))
            assert (root / r["path"]).is_file()
    day = json.loads((root / "indexes" / f"tiles_{WHEN:%Y%m%d}.geojson").read_text())
    assert sorted(f["properties"]["chip_id"] for f in day["features"]) == sorted(plan.index)


# ------------------------------------------------------------------- re-runs, appending
def test_rerun_of_indexed_chips_writes_nothing(tmp_path):
    plan, _ = write(tmp_path)
    before = snapshot(tmp_path)
    # what a chip job does: chips already in the index are not cut again
    todo = plan.loc[~plan["chip_id"].isin(read_index(tmp_path)["chip_id"])]
    assert todo.empty
    gated = gate_chips(cut_chips(STACK, todo, SPEC), GATE)
    summary = write_chips(gated, todo, StorageConfig(root=tmp_path), GATE)
    assert (summary.n_chips, summary.n_passed) == (0, 0)
    assert len(summary.index) == 4
    assert snapshot(tmp_path) == before


@pytest.fixture(scope="module")
def written_twice(tmp_path_factory):
    """The same chips written twice; the chip files and the index after the first write."""
    root = tmp_path_factory.mktemp("twice")
    write(root)
    files = {k: v[1] for k, v in snapshot(root).items() if k.startswith("chips/")}
    idx = read_index(root)
    _, summary = write(root)
    return root, files, idx, summary


def test_rewriting_the_same_chips_keeps_the_index_and_the_files(written_twice):
    root, files, idx, summary = written_twice
    assert summary.n_chips == 4
    after = {k: v[1] for k, v in snapshot(root).items() if k.startswith("chips/")}
    assert after == files  # same files, same bytes
    pd.testing.assert_frame_equal(read_index(root), idx)


def test_rewriting_the_same_chips_adds_no_cube_rows(written_twice):
    ids = [str(c) for c in open_cube(written_twice[0])["chip_id"].values]
    assert len(ids) == len(set(ids)) == 3


def test_a_second_write_appends_to_the_cube_and_the_index(tmp_path):
    plan1, _ = write(tmp_path)
    plan2, summary = write(tmp_path, MORE_SHIPS)
    assert summary.n_passed == 2 and len(summary.index) == 6
    cube = open_cube(tmp_path)  # the consolidated metadata has the appended length
    assert cube.sizes["chip"] == 5
    both = pd.concat([plan1, plan2]).set_index("chip_id", drop=False)
    for k, cid in enumerate(str(c) for c in cube["chip_id"].values):
        np.testing.assert_array_equal(cube["reflectance"].values[k],
                                      expected_pixels(both.loc[cid]))
    assert set(read_index(tmp_path)["chip_id"]) == set(both.index)


def test_should_stop_indexes_the_blocks_written_so_far(tmp_path):
    asked = iter([False])  # the first batch starts; asked again, the answer is stop
    plan, summary = write(tmp_path, block_size=2, should_stop=lambda: next(asked, True))
    assert summary.n_chips == 2
    idx = read_index(tmp_path)
    assert list(idx["chip_id"].sort_values()) == sorted(plan["chip_id"].iloc[:2])
    n_passed = int(idx["qa_pass"].sum())
    assert open_cube(tmp_path).sizes["chip"] == n_passed == summary.n_passed


def test_the_plan_needs_a_split_column(tmp_path):
    plan = make_plan(SHIPS)
    gated = gate_chips(cut_chips(STACK, plan, SPEC), GATE)
    with pytest.raises(ValueError, match="split"):
        write_chips(gated, plan.drop(columns="split"), StorageConfig(root=tmp_path), GATE)


# ---------------------------------------------------------------------------- switches
@pytest.mark.parametrize("switch", ["write_zarr", "write_geotiff", "write_quicklook"])
def test_each_storage_switch_changes_what_is_written(tmp_path, switch):
    plan, summary = write(tmp_path, cfg=StorageConfig(root=tmp_path, **{switch: False}))
    assert summary.n_passed == 3 and len(read_index(tmp_path)) == 4
    files = {p.relative_to(tmp_path) for p in (tmp_path / "chips").rglob("*") if p.is_file()}
    suffixes = {".tif", ".jpg", ".geojson", ".json"}
    if switch == "write_geotiff":
        suffixes.discard(".tif")
    if switch == "write_quicklook":
        suffixes.discard(".jpg")
    expect = {stem(tmp_path, row).relative_to(tmp_path).with_suffix(s)
              for _, row in plan.loc[plan["mmsi"].isin(PASSED)].iterrows() for s in suffixes}
    assert files == expect
    # the index names each passed chip's GeoTIFF (its JSON record without one): files that exist
    paths = read_index(tmp_path)["path"].dropna()
    assert len(paths) == 3 and all((tmp_path / p).is_file() for p in paths)
    assert {p.rsplit(".", 1)[1] for p in paths} == {"json" if switch == "write_geotiff"
                                                    else "tif"}
    assert (tmp_path / "chips.zarr").exists() is (switch != "write_zarr")
    if switch != "write_zarr":
        assert open_cube(tmp_path).sizes["chip"] == 3
