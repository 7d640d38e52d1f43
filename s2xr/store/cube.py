"""The Zarr v3 chip cube at ``{root}/chips.zarr``: written in regions by the tasks that cut
the chips (:mod:`s2xr.store.slots`) or appended along ``chip``; read with :func:`open_chips`.

Variables: reflectance(chip, band, y, x) float32, scl(chip, y, x) uint8, ship_mask(chip, y,
x) uint8 (when the chips carry labels), valid_frac and qa_* (chip), with per-chip coords
(chip_id, mmsi, time, item_id, tile_id, epsg, lon, lat, x_left, y_top, transform, split).
Eight chips per Zarr chunk, Blosc-LZ4 with byte shuffle (measured here: about half the write
time of Zstd and one chip per chunk). Every write ends by consolidating the metadata, so
``xr.open_zarr(root / "chips.zarr")`` opens it in one read and without a warning; s2xr's own
readers read the arrays' metadata (always current, even after a crash mid-append).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import xarray as xr

from s2xr.config import is_url
from s2xr.store.layout import DatasetLayout
from s2xr.store.objects import cube_at, exists, filesystem, has_zarr, join
from s2xr.store.slots import (
    SLOTS_ATTR,
    consolidate,
    known_variables,
    prepare,
    slots_per_batch,
    write_new_cube,
)

log = logging.getLogger(__name__)

CUBE_NAME = DatasetLayout.CUBE
DEFAULT_BATCH = 32  # storage.block_size's default: the region size of a cube appended first


def append_cube(root: str | Path, ds: xr.Dataset) -> str | Path:
    """Append computed chips to the cube (create it on first use); returns its path."""
    path = cube_at(root)
    ds = prepare(ds)
    if ds.sizes.get("chip", 0) == 0:
        return path
    if not has_zarr(path):  # a new cube takes region writes too (s2xr.store.slots)
        write_new_cube(path, ds, slots_per_batch(DEFAULT_BATCH))
    else:
        import zarr

        ds = _existing_variables(path, ds)
        # an append replaces the group's attributes: keep the cube's (its region size)
        have = zarr.open_group(str(path), mode="r", use_consolidated=False).attrs
        ds.attrs = {k: have[k] for k in (SLOTS_ATTR,) if k in have}
        ds.to_zarr(path, mode="a", append_dim="chip", zarr_format=3, consolidated=False)
    consolidate(path)
    log.info("cube %s: +%d chip(s)", path, ds.sizes["chip"])
    return path


def _existing_variables(path: str | Path, ds: xr.Dataset) -> xr.Dataset:
    """``ds`` without variables the existing cube lacks (e.g. ``ship_mask`` appended to a cube
    written before labels existed): Zarr cannot append a new variable along ``chip``."""
    ds, have = known_variables(path, ds)
    if "ship_mask" in have and "ship_mask" not in ds:  # keep the cube's arrays aligned
        log.warning("chips without labels appended to %s: their ship_mask is all 0", path)
        ds = ds.assign(ship_mask=(("chip", "y", "x"), np.zeros(
            (ds.sizes["chip"], ds.sizes["y"], ds.sizes["x"]), np.uint8)))
    return ds


def open_chips(path: str | Path, *, split: str | None = None) -> xr.Dataset:
    """Open the chip cube lazily as an ``xr.Dataset`` (Dask-backed; nothing is computed).

    ``path`` (a local path or an object store URL such as ``s3://bucket/prefix``, with the
    store's credentials in the environment): the dataset root (``storage.root``): the
    chips its index names as passed — what the last committed write made visible
    (docs/formats.md, "Commit protocol") — or the ``chips.zarr`` itself: every chip stored
    in it, committed or not. Either way once per chip, without the unused slots of a run's
    cube regions. ``split``: keep only the chips of that split (``train``, ``val``,
    ``test``). Selections are lazy.

    Dims: ``chip`` (one per chip), ``band`` (reflectance bands in cube order, asset
    keys such as ``blue green red nir swir16 swir22``), ``y`` and ``x`` (pixels, row 0 at
    the top = north), ``affine`` (6). Data variables: ``reflectance(chip, band, y, x)``
    float32 surface reflectance (NaN = nodata), ``scl(chip, y, x)`` uint8 SCL classes,
    ``ship_mask(chip, y, x)`` uint8 ship instances (0 = background, k = the chip's label
    with ``instance`` k; in datasets with labels), ``valid_frac``, ``read_error`` and the
    gate's ``qa_*`` per chip. Coords per chip: ``chip_id``, ``mmsi``, ``time`` (sensing),
    ``item_id``, ``tile_id``, ``epsg``, ``lon``, ``lat``, ``x_left``, ``y_top``,
    ``transform(chip, affine)``, ``split``. See ``docs/formats.md``.
    """
    p: str | Path = path if isinstance(path, str) and is_url(path) else Path(path)
    committed: np.ndarray | None = None
    if not str(p).rstrip("/").endswith(Path(CUBE_NAME).suffix):
        root, p = p, cube_at(p)
        committed = _committed(root)
    ds = xr.open_zarr(p, consolidated=False, zarr_format=3)
    ids = ds["chip_id"].values.astype(object)
    keep = ids != ""  # a hole: a reserved slot nothing was written to
    _, first = np.unique(ids, return_index=True)
    once = np.zeros(len(ids), bool)
    once[first] = True
    keep &= once  # a chip written again after a crash: its first copy
    if committed is not None:
        keep &= np.isin(ids, committed)
    if split is not None:
        keep &= ds["split"].values == split
    return ds if keep.all() else ds.isel(chip=np.flatnonzero(keep))


def _committed(root: str | Path) -> np.ndarray:
    """The passed chips the index of the dataset at ``root`` names (none without an index)."""
    import pyarrow.parquet as pq

    index = join(root, DatasetLayout.INDEXES, DatasetLayout.INDEX)
    if not exists(index):
        return np.array([], dtype=object)  # no index: nothing committed yet
    if isinstance(index, str):
        fs, key = filesystem(index)
        with fs.open(key, "rb") as f:
            table = pq.read_table(f, columns=["chip_id", "qa_pass"])
    else:
        table = pq.read_table(index, columns=["chip_id", "qa_pass"])
    idx = table.to_pandas()
    return idx.loc[idx["qa_pass"].astype(bool), "chip_id"].to_numpy(object)


def cube_chip_ids(root: str | Path) -> np.ndarray:
    """Chip IDs already in the cube (empty if there is none)."""
    p = cube_at(root)
    if not has_zarr(p):
        return np.array([], dtype=object)
    return open_chips(p)["chip_id"].values
