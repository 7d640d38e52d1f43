"""Lazy stacks sit on the items' native grid; both engines give the same pixels."""

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from s2xr.errors import SceneError
from s2xr.scenes import dedupe_items, stack_by_epsg, stack_scenes, to_reflectance


@pytest.fixture(scope="module")
def items(world):
    return dedupe_items(world.items())


def test_stack_grid_equals_asset_grid(items):
    stack = stack_scenes(items, ["blue", "nir", "swir16"])
    assert stack.dims == ("time", "band", "y", "x")
    assert list(stack.band.values) == ["blue", "nir", "swir16", "scl"]
    assert stack.dtype == np.uint16
    assert stack.chunks is not None  # lazy
    blue = items[0]["assets"]["blue"]
    t = blue["proj:transform"]
    assert float(stack.x[0]) == t[2] and float(stack.y[0]) == t[5]
    assert stack.sizes["y"] == blue["proj:shape"][0] and stack.sizes["x"] == blue["proj:shape"][1]
    assert float(stack.x[1] - stack.x[0]) == 10.0
    assert stack.attrs["epsg"] == items[0]["properties"]["proj:epsg"]
    # a 10 m window of the stack equals the COG
    win = stack.sel(band="nir").isel(time=0, y=slice(700, 764), x=slice(300, 364)).values
    with rasterio.open(items[0]["assets"]["nir"]["href"]) as src:
        np.testing.assert_array_equal(win, src.read(1, window=Window(300, 700, 64, 64)))
    # SCL (20 m) is nearest-resampled: every 10 m pixel holds its 20 m pixel's class
    scl = stack.sel(band="scl").isel(time=0, y=slice(700, 764), x=slice(300, 364)).values
    with rasterio.open(items[0]["assets"]["scl"]["href"]) as src:
        native = src.read(1, window=Window(150, 350, 32, 32))
    np.testing.assert_array_equal(scl, np.repeat(np.repeat(native, 2, 0), 2, 1))


def test_stack_handles_proj_code_items(items):
    """pystac ≥ 1.15 style items (proj:code only) give the same grid."""
    import copy

    migrated = copy.deepcopy(items)
    for it in migrated:
        it["properties"]["proj:code"] = f"EPSG:{it['properties'].pop('proj:epsg')}"
    a = stack_scenes(items, ["red"])
    b = stack_scenes(migrated, ["red"])
    assert float(a.x[0]) == float(b.x[0]) and float(a.y[0]) == float(b.y[0])
    assert a.shape == b.shape


def test_odc_stac_engine_gives_same_pixels(items):
    a = stack_scenes(items[:1], ["green", "swir16"])
    b = stack_scenes(items[:1], ["green", "swir16"], engine="odc-stac")
    assert float(a.x[0]) == float(b.x[0]) and float(a.y[0]) == float(b.y[0])
    sl = dict(time=0, y=slice(1000, 1100), x=slice(500, 600))
    np.testing.assert_array_equal(a.sel(band="green").isel(sl).values,
                                  b.sel(band="green").isel(sl).values)
    np.testing.assert_array_equal(a.sel(band="scl").isel(sl).values,
                                  b.sel(band="scl").isel(sl).values)


def test_to_reflectance_and_errors(items):
    stack = stack_scenes(items[:1], ["blue"])
    refl = to_reflectance(stack).sel(band="blue").isel(time=0, y=slice(900, 910),
                                                       x=slice(900, 910)).values
    dn = stack.sel(band="blue").isel(time=0, y=slice(900, 910), x=slice(900, 910)).values
    np.testing.assert_allclose(refl, dn * 0.0001 - 0.1, rtol=1e-5)
    with pytest.raises(SceneError, match="missing band"):
        stack_by_epsg(items, ["rededge1"])
