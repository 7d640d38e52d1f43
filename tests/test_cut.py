"""cut_chips cuts from the stack's pixels: whatever the stack is, the chips are its values."""

from __future__ import annotations

import threading
import warnings

import dask
import dask.array as da
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from helpers.plans import plan_at_pixels

from s2xr.chips import cut_chips
from s2xr.config import ChipSpec
from s2xr.errors import SceneError
from s2xr.scenes import READ_ERROR_CLASS, dedupe_items, stack_scenes

BANDS = ["blue", "green", "red", "nir", "swir16", "swir22"]
SPEC = ChipSpec(size=64, batch_size=4)


@pytest.fixture(scope="module")
def item(world):
    return dedupe_items(world.items())[0]


# interior chips, two sharing blocks, one across a 512-px block corner, one off the edge
WINDOWS = [(100, 120), (130, 140), (480, 480), (900, 300), (-20, 1000)]


@pytest.fixture(scope="module")
def stack(item):
    return stack_scenes([item], BANDS)


def test_chips_are_the_stacks_pixels(item, stack):
    ds = cut_chips(stack, plan_at_pixels(item, WINDOWS), SPEC)
    assert ds.reflectance.dims == ("chip", "band", "y", "x")
    assert list(ds.band.values) == BANDS
    refl, scl = ds.reflectance.values, ds.scl.values
    for k, (r, c) in enumerate(WINDOWS[:4]):
        want = stack.isel(time=0, y=slice(r, r + 64), x=slice(c, c + 64)).values
        np.testing.assert_array_equal(refl[k], want[:6])
        np.testing.assert_array_equal(scl[k], want[6].astype(np.uint8))
    # the chip running off the top edge: NaN / SCL 0 off the stack, its pixels on it
    np.testing.assert_array_equal(refl[4, :, 20:], stack.isel(time=0, y=slice(0, 44),
                                                               x=slice(1000, 1064)).values[:6])
    assert np.isnan(refl[4, :, :20]).all() and (scl[4, :20] == 0).all()
    assert not ds.read_error.values.any()


def test_a_scaled_stack_gives_scaled_chips_and_a_mask_is_honoured(item, stack):
    plan = plan_at_pixels(item, WINDOWS)
    base = cut_chips(stack, plan, SPEC).reflectance.values
    doubled = cut_chips(stack * 2, plan, SPEC).reflectance.values
    np.testing.assert_array_equal(doubled, 2 * base)
    mask = xr.zeros_like(stack.isel(time=0, band=0), dtype=bool)
    mask[100:140, 120:150] = True
    masked = cut_chips(stack.where(mask), plan, SPEC)
    r = masked.reflectance.values[0]
    assert np.isnan(r[:, 40:]).all() and np.isnan(r[:, :, 30:]).all()  # outside the mask
    np.testing.assert_array_equal(r[:, :40, :30], base[0][:, :40, :30])
    assert (masked.scl.values[0][40:] == 0).all()  # SCL masked too: nodata
    assert masked.valid_frac.values[0] == pytest.approx(40 * 30 / 64**2)


def test_every_engine_and_a_zarr_cube_give_the_same_chips(item, stack, tmp_path):
    plan = plan_at_pixels(item, WINDOWS)
    ref = cut_chips(stack, plan, SPEC)
    cubes = {e: cut_chips(stack_scenes([item], BANDS, engine=e), plan, SPEC)
             for e in ("stackstac", "odc-stac")}
    # a datacube written to Zarr and opened lazily is a stack too
    stack.isel(y=slice(0, 1100), x=slice(0, 1100)).to_dataset(name="refl").to_zarr(
        tmp_path / "cube.zarr", consolidated=False)
    zstack = xr.open_zarr(tmp_path / "cube.zarr", consolidated=False)["refl"]
    assert isinstance(zstack.data, da.Array)
    cubes["zarr"] = cut_chips(zstack, plan, SPEC)
    # in memory (NumPy-backed, no Dask)
    cubes["memory"] = cut_chips(stack.isel(y=slice(0, 1100), x=slice(0, 1100)).compute(),
                                plan, SPEC)
    for name, ds in cubes.items():
        got, want = ds.reflectance.values, ref.reflectance.values
        np.testing.assert_array_equal(ds.scl.values, ref.scl.values, err_msg=name)
        np.testing.assert_array_equal(got[:, :4], want[:, :4], err_msg=name)  # 10 m bands
        np.testing.assert_allclose(got[:, 4:], want[:, 4:], atol=0.5e-4 + 1e-7, err_msg=name)
        assert ds.stack_engine in ("stackstac", "odc-stac", "s2xr", "unknown")
    # the engines are different readers: stac.engine changes where 20 m pixels come from
    assert not np.array_equal(cubes["stackstac"].reflectance.values[:, 4:],
                              ref.reflectance.values[:, 4:])


def _counting_stack(shape=(2, 7, 256, 256), chunks=(1, 7, 64, 64)):
    """A lazy stack whose blocks count how often they are computed."""
    calls: dict[tuple[int, ...], int] = {}
    lock = threading.Lock()

    def block(block_info=None):
        loc = block_info[None]["chunk-location"]
        with lock:
            calls[loc] = calls.get(loc, 0) + 1
        (t0, _), (_, _), (y0, y1), (x0, x1) = block_info[None]["array-location"]
        yy, xx = np.mgrid[y0:y1, x0:x1]
        out = np.empty((1, shape[1], y1 - y0, x1 - x0), np.float32)
        out[:] = (yy * 1000 + xx + t0 * 1e6).astype(np.float32)
        out[0, -1] = 6  # water
        return out

    arr = da.map_blocks(block, chunks=da.core.normalize_chunks(chunks, shape),
                        dtype=np.float32, meta=np.empty((0, 0, 0, 0), np.float32))
    stack = xr.DataArray(arr, dims=("time", "band", "y", "x"), coords={
        "time": pd.to_datetime(["2026-06-01T11:00", "2026-06-04T11:00"]),
        "id": ("time", ["a", "b"]), "band": [*BANDS, "scl"],
        "x": 500000 + 5 + 10 * np.arange(shape[3]), "y": 4000000 - 5 - 10 * np.arange(shape[2])})
    return stack, calls


def test_each_block_is_computed_once_and_only_blocks_chips_touch():
    stack, calls = _counting_stack()
    # three chips share block (0, 0, 1, 1); one chip is in the second item
    rc = [(70, 70), (80, 75), (90, 100), (10, 200)]
    plan = pd.DataFrame({"chip_id": [f"{i:016x}" for i in range(4)], "mmsi": 235000001,
                         "item_id": ["a", "a", "a", "b"], "tile_id": "30STE", "epsg": 32630,
                         "scene_datetime": pd.to_datetime(["2026-06-01T11:00"] * 3 +
                                                          ["2026-06-04T11:00"]),
                         "lon": 0.0, "lat": 0.0, "x_left": [500000 + 10.0 * c for _, c in rc],
                         "y_top": [4000000 - 10.0 * r for r, _ in rc], "size": 32, "res": 10.0})
    ds = cut_chips(stack, plan, ChipSpec(size=32, batch_size=2))
    with dask.config.set(scheduler="threads"):
        refl = ds.reflectance.values
    touched = {(0, 0, 1, 1), (0, 0, 1, 2), (1, 0, 0, 3)}
    assert set(calls) == touched and set(calls.values()) == {1}
    for k, (r, c) in enumerate(rc):
        t = 1e6 if k == 3 else 0
        np.testing.assert_array_equal(refl[k, 0, 0, :3], t + r * 1000 + c + np.arange(3))
    # the graph: batch tasks depend only on the blocks they touch
    assert ds.reflectance.data.numblocks[0] == 2


def test_read_errors_mark_the_chips_not_the_job(item, tmp_path):
    import copy
    from urllib.parse import urlparse

    broken = copy.deepcopy(item)
    bad = tmp_path / "nir.tif"
    good = urlparse(item["assets"]["nir"]["href"]).path
    with open(good, "rb") as f:
        bad.write_bytes(f.read(2000))  # a truncated COG
    broken["assets"]["nir"]["href"] = bad.as_uri()
    ds = cut_chips(stack_scenes([broken], BANDS), plan_at_pixels(item, WINDOWS[:2]), SPEC)
    assert ds.read_error.values.all()
    assert np.isnan(ds.reflectance.values).all() and (ds.scl.values == 0).all()
    assert READ_ERROR_CLASS not in ds.scl.values


def test_clear_errors(item, stack):
    plan = plan_at_pixels(item, WINDOWS[:1])
    with pytest.raises(SceneError, match="lacks band"):
        cut_chips(stack.sel(band=BANDS), plan, SPEC)
    with pytest.raises(SceneError, match="lacks column"):
        cut_chips(stack, plan.drop(columns="size"), SPEC)
    with pytest.raises(SceneError, match="not in the stack"):
        cut_chips(stack, plan.assign(item_id="other"), SPEC)
    with pytest.raises(SceneError, match="pixel corners"):
        cut_chips(stack.assign_coords(x=stack.x - 5, y=stack.y + 5), plan, SPEC)
    with pytest.raises(SceneError, match="resolution=20"):
        cut_chips(stack, plan.assign(res=20.0), SPEC)
    with pytest.raises(SceneError, match="scale/offset"):
        cut_chips(stack.fillna(0).astype(np.uint16), plan, SPEC)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cut_chips(stack, plan.iloc[:0], SPEC).sizes["chip"] == 0
