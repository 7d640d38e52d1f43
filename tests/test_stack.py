"""Stacks: the items' native grid, reflectance, pixel centres; every engine the same pixels."""

import numpy as np
import pytest
import rasterio
import xarray as xr
from rasterio.windows import Window

from s2xr.errors import SceneError
from s2xr.scenes import dedupe_items, scene_assets, stack_by_epsg, stack_scenes, to_reflectance

ENGINES = ("s2xr", "stackstac", "odc-stac")


@pytest.fixture(scope="module")
def items(world):
    return dedupe_items(world.items())


def _reflectance(dn: np.ndarray) -> np.ndarray:
    out = dn.astype(np.float32) * np.float32(1e-4) + np.float32(-0.1)
    out[dn == 0] = np.nan
    return out


@pytest.mark.parametrize("engine", ENGINES)
def test_stack_is_reflectance_on_the_asset_grid(items, engine):
    stack = stack_scenes(items[:1], ["blue", "nir", "swir16"], engine=engine)
    assert stack.dims == ("time", "band", "y", "x")
    assert list(stack.band.values) == ["blue", "nir", "swir16", "scl"]
    assert stack.dtype == np.float32
    assert stack.chunks is not None  # lazy
    assert str(stack["id"].values[0]) == items[0]["id"]
    blue = items[0]["assets"]["blue"]
    t = blue["proj:transform"]
    # x/y are pixel centres
    assert float(stack.x[0]) == t[2] + 5 and float(stack.y[0]) == t[5] - 5
    assert stack.sizes["y"] == blue["proj:shape"][0] and stack.sizes["x"] == blue["proj:shape"][1]
    assert stack.attrs["epsg"] == items[0]["properties"]["proj:epsg"]
    assert stack.attrs["engine"] == engine
    # a 10 m window of the stack is the COG's DN × scale + offset
    win = stack.sel(band="nir").isel(time=0, y=slice(700, 764), x=slice(300, 364)).values
    with rasterio.open(items[0]["assets"]["nir"]["href"]) as src:
        dn = src.read(1, window=Window(300, 700, 64, 64))
    np.testing.assert_array_equal(win, _reflectance(dn))
    # SCL (20 m) is nearest-resampled: every 10 m pixel holds its 20 m pixel's class
    scl = stack.sel(band="scl").isel(time=0, y=slice(700, 764), x=slice(300, 364)).values
    with rasterio.open(items[0]["assets"]["scl"]["href"]) as src:
        native = src.read(1, window=Window(150, 350, 32, 32))
    np.testing.assert_array_equal(scl, np.repeat(np.repeat(native, 2, 0), 2, 1))


def test_engines_agree_within_half_a_dn_on_20m_bands(items):
    sl = dict(time=0, y=slice(1000, 1100), x=slice(500, 600))
    got = {e: stack_scenes(items[:1], ["green", "swir16"], engine=e).isel(sl).values
           for e in ENGINES}
    for e in ENGINES[1:]:
        np.testing.assert_array_equal(got[e][0], got["s2xr"][0])  # 10 m: the COG itself
        np.testing.assert_array_equal(got[e][2], got["s2xr"][2])  # SCL: nearest
        np.testing.assert_allclose(got[e][1], got["s2xr"][1], atol=0.5e-4 + 1e-7)
    # ... but they are not the same reader: GDAL's warp and s2xr's kernel round differently
    assert not np.array_equal(got["stackstac"][1], got["s2xr"][1])


def test_chunksize_sets_the_blocks(items):
    assert stack_scenes(items[:1], ["red"], chunksize=256).chunks[2][0] == 256
    assert stack_scenes(items[:1], ["red"], chunksize=1024).chunks[2][0] == 1024


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


def test_scene_assets_is_built_once_and_names_missing_bands(items):
    assets = scene_assets(items, ["blue", "swir16"])
    row = assets.table.loc[items[0]["id"]]
    assert row["scales"] == (1e-4, 1e-4) and row["offsets"] == (-0.1, -0.1)
    prov = assets.provenance(items[0]["id"], "bilinear")
    assert prov["hrefs"]["scl"] == items[0]["assets"]["scl"]["href"]
    assert stack_by_epsg(assets)  # a SceneAssets is stacked as is
    with pytest.raises(SceneError, match="missing band"):
        stack_by_epsg(items, ["rededge1"])
    with pytest.raises(SceneError, match=r"stac\.engine"):
        stack_by_epsg(items, ["red"], engine="gdal")


def test_to_reflectance_of_a_dn_stack():
    dn = xr.DataArray(np.array([[[[0, 1000], [2000, 3000]], [[4, 5], [0, 6]]]], np.uint16),
                      dims=("time", "band", "y", "x"),
                      coords={"band": ["red", "scl"], "scale": (("time", "band"), [[1e-4, 1]]),
                              "offset": (("time", "band"), [[-0.1, 0]])})
    refl = to_reflectance(dn).values
    assert refl.dtype == np.float32
    np.testing.assert_allclose(refl[0, 0], [[np.nan, 0.0], [0.1, 0.2]], atol=1e-6)
    np.testing.assert_array_equal(refl[0, 1], [[4, 5], [0, 6]])  # classes kept
    with pytest.raises(SceneError, match="scale"):
        to_reflectance(dn.drop_vars("scale"))
