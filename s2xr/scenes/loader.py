"""s2xr's own lazy loader (``stac.engine: s2xr``): a reflectance stack whose blocks are read
straight from the COGs by :mod:`s2xr.scenes.reader`.

The result is the same kind of stack every engine returns (see :mod:`s2xr.scenes.stack`):
``DataArray(time, band, y, x)`` float32, reflectance bands then ``scl``. Each Dask block is
one item × all bands × a ``chunksize``² window, so a chip graph depends only on the blocks
its chips touch; decoded COG blocks are shared between threads, so a COG block under four
stack blocks is decoded once. A block whose assets cannot be read is NaN with SCL
:data:`READ_ERROR_CLASS` (logged), so one bad asset marks its chips instead of failing
the job.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

import dask.array as da
import numpy as np
import pandas as pd
import rasterio
import xarray as xr
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph

from s2xr.errors import SceneError
from s2xr.scenes.assets import CLASS_BAND, SceneAssets
from s2xr.scenes.reader import (
    RESAMPLING,
    prefetch_windows,
    read_classes_into,
    read_reflectance_into,
    source_window,
    start_fetching,
)
from s2xr.scenes.remote import is_remote, record_read_failure, use_read_timeout

log = logging.getLogger(__name__)

READ_ERROR_CLASS = 255
"""SCL value the s2xr loader gives pixels it could not read (L2A classes are 0–11)."""


def load_block(hrefs: tuple[str, ...], scales: tuple[float, ...], offsets: tuple[float, ...],
               scl_href: str, x_left: float, y_top: float, height: int, width: int,
               res: float, resampling: str, io_threads: int = 16,
               read_timeout_s: float = 30.0) -> np.ndarray:
    """One stack block → float32 (1, band, height, width): reflectance of ``hrefs`` (NaN for
    nodata/off the raster), then SCL classes. Computes (reads the COGs; remote COG blocks
    are fetched ``io_threads`` at a time first, each request given ``read_timeout_s``)."""
    out = np.empty((1, len(hrefs) + 1, height, width), np.float32)
    rs = RESAMPLING[resampling]
    try:
        if any(is_remote(h) for h in (*hrefs, scl_href)):
            use_read_timeout(read_timeout_s)
            prefetch_windows([source_window(h, x_left, y_top, (height, width), res)
                              for h in (*hrefs, scl_href)], io_threads)
        for b, href in enumerate(hrefs):
            read_reflectance_into(href, x_left, y_top, res, rs, scales[b], offsets[b], out[0, b])
        classes = np.empty((height, width), np.uint8)
        read_classes_into(scl_href, x_left, y_top, res, classes)
        out[0, -1] = classes
    except (SceneError, rasterio.errors.RasterioError, OSError) as exc:
        log.warning("block at (%.1f, %.1f): read failed, marked as read error: %s",
                    x_left, y_top, exc)
        record_read_failure(exc)
        out[0, :-1] = np.nan
        out[0, -1] = READ_ERROR_CLASS
    return out


Area = tuple[tuple[str, ...], float, float, tuple[int, int], float]
"""One stack block's sources: (hrefs incl. SCL, x_left, y_top, (height, width), res)."""

_SOURCES: OrderedDict[str, tuple[dict[tuple[int, int, int], Area], int]] = OrderedDict()
_SOURCES_KEPT = 32  # stacks remembered per process (a few hundred bytes per block)


def _in_cluster_worker() -> bool:
    try:
        from distributed import get_worker
    except ImportError:
        return False
    try:
        get_worker()
    except ValueError:
        return False
    return True


def read_ahead(areas: list[Area], io_threads: int) -> None:
    """Task: start fetching the remote COG blocks of ``areas`` and return at once (see
    :func:`~s2xr.scenes.reader.start_fetching`). A no-op on a distributed worker, where the
    blocks may be loaded by another process."""
    if not _in_cluster_worker():
        start_fetching(areas, io_threads)


def read_ahead_task(data: da.Array, blocks: Iterable[tuple[int, int, int]]) -> Any:
    """A delayed :func:`read_ahead` of the (time, y, x) ``blocks`` of ``data`` when ``data``
    is an s2xr loader stack with remote assets (as :func:`load_stack` built it, not
    transformed since), else ``None``. Does not compute."""
    known = _SOURCES.get(data.name)
    if known is None:
        return None
    areas, io_threads = known
    wanted = [areas[b] for b in blocks if b in areas]
    if not wanted:
        return None
    import dask

    return dask.delayed(read_ahead, pure=True)(wanted, io_threads)


def grid_of(table: pd.DataFrame, resolution: float) -> tuple[float, float, int, int]:
    """(x_left, y_top, height, width) of the union of the items' rasters at ``resolution``."""
    x0 = float(table["x0"].min())
    y0 = float(table["y0"].max())
    x1 = float((table["x0"] + table["width"] * table["res"]).max())
    y1 = float((table["y0"] - table["height"] * table["res"]).min())
    return x0, y0, round((y0 - y1) / resolution), round((x1 - x0) / resolution)


def load_stack(assets: SceneAssets, epsg: int, *, resolution: float = 10.0,
               resampling: str = "bilinear", chunksize: int = 512,
               io_threads: int = 16, read_timeout_s: float = 30.0) -> xr.DataArray:
    """Lazy reflectance stack of the items of ``assets`` in ``epsg`` on the union of their
    native grids at ``resolution`` → ``DataArray(time, band, y, x)`` float32 (x/y pixel
    centres; coords ``id``, ``tile_id`` on time). Blocks are (1, all bands, chunksize,
    chunksize). ``io_threads``: range requests in flight per process for remote COGs;
    ``read_timeout_s``: how long one such request may take before it is retried. Does
    not compute."""
    sub = assets.subset(epsg=epsg).table.sort_values(["datetime", "item_id"], kind="stable")
    if sub.empty:
        raise SceneError(f"no item in EPSG:{epsg}")
    x0, y0, height, width = grid_of(sub, resolution)
    bands = (*assets.bands, CLASS_BAND)
    ys = list(range(0, height, chunksize))
    xs = list(range(0, width, chunksize))
    name = "s2xr-load-" + tokenize(sub["item_id"].tolist(), bands, resolution, resampling,
                                   chunksize, x0, y0, height, width)
    dsk: dict[Any, Any] = {}
    areas: dict[tuple[int, int, int], Area] = {}
    for t, row in enumerate(sub.itertuples()):
        remote = any(is_remote(h) for h in (*row.hrefs.values(), row.scl_href))
        for i, r in enumerate(ys):
            h = min(chunksize, height - r)
            for j, c in enumerate(xs):
                w = min(chunksize, width - c)
                if remote:
                    areas[(t, i, j)] = ((*(row.hrefs[b] for b in assets.bands), row.scl_href),
                                        x0 + c * resolution, y0 - r * resolution, (h, w),
                                        resolution)
                dsk[(name, t, 0, i, j)] = (
                    load_block, tuple(row.hrefs[b] for b in assets.bands), row.scales,
                    row.offsets, row.scl_href, x0 + c * resolution, y0 - r * resolution, h, w,
                    resolution, resampling, io_threads, read_timeout_s)
    chunks = ((1,) * len(sub), (len(bands),), tuple(min(chunksize, height - r) for r in ys),
              tuple(min(chunksize, width - c) for c in xs))
    data = da.Array(HighLevelGraph.from_collections(name, dsk, dependencies=()), name,
                    chunks=chunks, dtype=np.float32)
    if areas:  # remote assets: cut_chips can read a batch's blocks ahead (read_ahead_task)
        _SOURCES[name] = (areas, io_threads)
        _SOURCES.move_to_end(name)
        while len(_SOURCES) > _SOURCES_KEPT:
            _SOURCES.popitem(last=False)
    times = pd.to_datetime(sub["datetime"], utc=True).dt.tz_localize(None).to_numpy(
        "datetime64[ns]")
    arr = xr.DataArray(
        data, dims=("time", "band", "y", "x"),
        coords={"time": times, "id": ("time", sub["item_id"].to_numpy(object)),
                "tile_id": ("time", sub["tile_id"].to_numpy(object)),
                "band": np.array(bands, dtype=object),
                "x": x0 + (np.arange(width) + 0.5) * resolution,
                "y": y0 - (np.arange(height) + 0.5) * resolution},
    )
    log.info("stack EPSG:%d (s2xr loader): %d item(s) × %d band(s), %d×%d px in %d block(s) "
             "(lazy)", epsg, len(sub), len(bands), height, width, len(dsk))
    return arr
