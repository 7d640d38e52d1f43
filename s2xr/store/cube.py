"""The Zarr v3 chip cube at ``{root}/chips.zarr``, appendable along ``chip``.

Variables: reflectance(chip, band, y, x) float32, scl(chip, y, x) uint8, valid_frac and
qa_* (chip), with per-chip coords (chip_id, mmsi, time, item_id, tile_id, epsg, lon, lat,
x_left, y_top, transform, split). Eight chips per Zarr chunk, Blosc-LZ4 with byte shuffle
(measured here: about half the write time of Zstd and one chip per chunk).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import xarray as xr

log = logging.getLogger(__name__)

CUBE_NAME = "chips.zarr"
CHIPS_PER_CHUNK = 8  # 8 chips × 5–6 bands ≈ 12 MB per chunk; Blosc-LZ4 + byte shuffle
_OBJ_COORDS = ("chip_id", "item_id", "tile_id", "band", "split", "qa_reason")


def _prepare(ds: xr.Dataset) -> xr.Dataset:
    out = ds.copy()
    for name in _OBJ_COORDS:
        if name in out.variables:
            out[name] = out[name].astype(object)
    return out


def append_cube(root: Path, ds: xr.Dataset) -> Path:
    """Append computed chips to the cube (create it on first use); returns its path."""
    path = Path(root) / CUBE_NAME
    ds = _prepare(ds)
    if ds.sizes.get("chip", 0) == 0:
        return path
    if not (path / "zarr.json").exists():
        from zarr.codecs import BloscCodec

        fast = (BloscCodec(cname="lz4", clevel=5, shuffle="shuffle"),)
        enc = {"reflectance": {"chunks": (CHIPS_PER_CHUNK, ds.sizes["band"], ds.sizes["y"],
                                          ds.sizes["x"]), "compressors": fast},
               "scl": {"chunks": (CHIPS_PER_CHUNK, ds.sizes["y"], ds.sizes["x"]),
                       "compressors": fast},
               "time": {"units": "milliseconds since 1970-01-01", "dtype": "int64"}}
        ds.to_zarr(path, mode="w-", encoding=enc, zarr_format=3, consolidated=False)
    else:
        ds.to_zarr(path, mode="a", append_dim="chip", zarr_format=3, consolidated=False)
    log.info("cube %s: +%d chip(s)", path, ds.sizes["chip"])
    return path


def open_chips(path: str | Path) -> xr.Dataset:
    """Open a chip cube lazily (``path`` is the dataset root or the .zarr itself)."""
    p = Path(path)
    if p.suffix != ".zarr":
        p = p / CUBE_NAME
    ds = xr.open_zarr(p, consolidated=False, zarr_format=3)
    return ds


def cube_chip_ids(root: Path) -> np.ndarray:
    """Chip IDs already in the cube (empty if there is none)."""
    p = Path(root) / CUBE_NAME
    if not (p / "zarr.json").exists():
        return np.array([], dtype=object)
    return open_chips(p)["chip_id"].values
