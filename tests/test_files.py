"""Per-chip GeoTIFFs are valid COGs at every chip size (one tile, or the COG driver)."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from affine import Affine
from rio_cogeo.cogeo import cog_validate

from s2xr.store.files import write_chip_geotiff


@pytest.mark.parametrize("size", [64, 256, 300, 512, 1024])
def test_chip_geotiff_is_a_valid_cog(tmp_path, size):
    rng = np.random.default_rng(size)
    refl = rng.random((3, size, size), dtype=np.float32)
    refl[:, :3, :3] = np.nan
    path = tmp_path / "c.tif"
    write_chip_geotiff(path, refl, ["red", "green", "nir"], Affine(10, 0, 5e5, 0, -10, 4e6),
                       32630, tags={"chip_id": "abc"})
    ok, errors, _ = cog_validate(str(path))
    assert ok, errors
    with rasterio.open(path) as src:
        np.testing.assert_array_equal(src.read(), refl)
        assert src.descriptions == ("red", "green", "nir") and src.crs.to_epsg() == 32630
        assert src.tags()["chip_id"] == "abc" and src.compression.name.lower() == "zstd"
