"""Cut chips: a lazy, Dask-backed Dataset built from a chip plan.

One Dask task reads one batch of chips (``ChipSpec.batch_size``): for each chip and band it
reads only the native window it needs from the COG, through dataset handles cached per
thread (rasterio datasets are not thread-safe), and resamples 20 m bands to the 10 m chip
grid in NumPy (separable bilinear between pixel centres; SCL nearest). The graph therefore
has ~2 nodes per batch, whatever the number of chips, and no task reads a whole scene.
"""

from __future__ import annotations

import functools
import logging
import math
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dask
import dask.array as da
import numpy as np
import pandas as pd
import rasterio
import xarray as xr
from rasterio.enums import Resampling
from rasterio.windows import Window

from s2xr.chips import kernels
from s2xr.config import ChipSpec
from s2xr.errors import SceneError

log = logging.getLogger(__name__)

_RESAMPLING = {"bilinear": Resampling.bilinear, "cubic": Resampling.cubic,
               "nearest": Resampling.nearest}
_local = threading.local()
MAX_OPEN_PER_THREAD = 64
# GDAL's block cache keeps decoded COG blocks for neighbouring chips (chips are planned in
# block order). 256 MB (given in bytes: a small number like 512 would be read as 512 *bytes*
# and disable it) holds ~500 decoded 512² blocks and keeps memory flat over long runs.
GDAL_CACHE_BYTES = 256 * 2**20
# whole blocks are read once into the shared BlockCache below, so GDAL's own cache can be small
GDAL_OPTIONS = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR", "GDAL_CACHEMAX": 32 * 2**20}


_generation = [0]


def reset_dataset_cache() -> None:
    """Drop the shared decoded blocks and make every thread close its dataset handles on its
    next read. Used between benchmark runs and after files are replaced."""
    _generation[0] += 1
    BLOCKS.clear()


def _dataset(href: str) -> Any:
    """A rasterio dataset for ``href``, opened once per thread (LRU of 64)."""
    cache: OrderedDict[str, Any] = getattr(_local, "datasets", None) or OrderedDict()
    if getattr(_local, "generation", 0) != _generation[0]:
        for ds in cache.values():
            ds.close()
        cache.clear()
        _local.generation = _generation[0]
    _local.datasets = cache
    ds = cache.get(href)
    if ds is None:
        env = getattr(_local, "env", None)
        if env is None:
            _local.env = rasterio.Env(**GDAL_OPTIONS)
            _local.env.__enter__()
        try:
            ds = rasterio.open(href)
        except rasterio.errors.RasterioIOError as exc:
            raise SceneError(f"cannot open {href}: {exc}") from exc
        cache[href] = ds
        if len(cache) > MAX_OPEN_PER_THREAD:
            _, old = cache.popitem(last=False)
            old.close()
    else:
        cache.move_to_end(href)
    return ds


@dataclass(frozen=True)
class WindowPlan:
    """How to build one ``size``² output window from a raster: the integer source window to
    read (``rows``, ``cols`` half-open) and per-axis resampling operators."""

    rows: tuple[int, int]
    cols: tuple[int, int]
    wy: np.ndarray  # (3, size) i0, i1, weight for bilinear; (size,) indices for nearest
    wx: np.ndarray
    valid_y: np.ndarray  # (size,) bool: output row centre lies on the raster
    valid_x: np.ndarray
    nearest: bool

    @property
    def empty(self) -> bool:
        return self.rows[1] <= self.rows[0] or self.cols[1] <= self.cols[0]


def _axis(start: float, f: float, size: int, n: int, nearest: bool
          ) -> tuple[tuple[int, int], np.ndarray, np.ndarray]:
    """Source window and operator along one axis. ``start``: source pixel coordinate (edges
    at integers) of the output's first edge; ``f``: source pixels per output pixel.

    Nearest: (size,) indices into the window. Bilinear: (3, size) rows i0, i1 (indices into
    the window) and the weight w of i1, between pixel centres, clamped at the raster edge.
    """
    lo_int = math.floor(start)
    frac = start - lo_int
    span = size * f + 2
    if lo_int >= 1 and lo_int + span < n - 1:  # interior: the operator only depends on frac
        (lo, hi), op = _interior_axis(round(frac, 9), f, size, nearest)
        return (lo + lo_int, hi + lo_int), op, _ALL_VALID.setdefault(size, np.ones(size, bool))
    q = start + (np.arange(size) + 0.5) * f  # output pixel centres in source coordinates
    valid = (q >= 0) & (q < n)
    if not valid.any():
        return (0, 0), np.zeros((3, size) if not nearest else size, dtype=np.int64), valid
    if nearest:
        idx = np.clip(np.floor(q).astype(np.int64), 0, n - 1)
        lo, hi = int(idx[valid].min()), int(idx[valid].max()) + 1
        return (lo, hi), np.clip(idx - lo, 0, hi - lo - 1), valid
    p = np.clip(q - 0.5, 0, n - 1)
    i0 = np.floor(p).astype(np.int64)
    i1 = np.minimum(i0 + 1, n - 1)
    w = p - i0
    lo, hi = int(i0[valid].min()), int(i1[valid].max()) + 1
    i0 = np.clip(i0 - lo, 0, hi - lo - 1)
    i1 = np.clip(i1 - lo, 0, hi - lo - 1)
    return (lo, hi), np.stack([i0, i1, w]), valid


_ALL_VALID: dict[int, np.ndarray] = {}


@functools.lru_cache(maxsize=1024)
def _interior_axis(frac: float, f: float, size: int, nearest: bool
                   ) -> tuple[tuple[int, int], np.ndarray]:
    """Axis operator for a window starting at fractional offset ``frac`` well inside the
    raster (so no clamping); indices relative to the start's integer part."""
    q = frac + (np.arange(size) + 0.5) * f
    if nearest:
        idx = np.floor(q).astype(np.int64)
        lo, hi = int(idx.min()), int(idx.max()) + 1
        op = idx - lo
    else:
        p = q - 0.5
        i0 = np.floor(p).astype(np.int64)
        i1 = i0 + 1
        w = p - i0
        lo, hi = int(i0.min()), int(i1.max()) + 1
        op = np.stack([i0 - lo, i1 - lo, w])
    op.setflags(write=False)
    return (lo, hi), op


def plan_window(transform: Any, shape: tuple[int, int], x_left: float, y_top: float, size: int,
                res: float, nearest: bool) -> WindowPlan:
    """The :class:`WindowPlan` for a ``size``² grid at ``res`` with top-left (x_left, y_top)
    on a raster with ``transform`` (north-up) and ``shape`` (rows, cols)."""
    f = res / transform.a
    c = (x_left - transform.c) / transform.a
    r = (transform.f - y_top) / -transform.e
    exact = abs(f - 1.0) < 1e-9 and abs(c - round(c)) < 1e-6 and abs(r - round(r)) < 1e-6
    if exact:  # same grid: a plain integer window
        c, r = round(c), round(r)
        vy = (np.arange(size) + r >= 0) & (np.arange(size) + r < shape[0])
        vx = (np.arange(size) + c >= 0) & (np.arange(size) + c < shape[1])
        rows = (max(r, 0), min(r + size, shape[0]))
        cols = (max(c, 0), min(c + size, shape[1]))
        wy = np.clip(np.arange(size) + r - rows[0], 0, max(rows[1] - rows[0] - 1, 0))
        wx = np.clip(np.arange(size) + c - cols[0], 0, max(cols[1] - cols[0] - 1, 0))
        return WindowPlan(rows, cols, wy, wx, vy, vx, True)
    rows, wy, vy = _axis(r, f, size, shape[0], nearest)
    cols, wx, vx = _axis(c, f, size, shape[1], nearest)
    return WindowPlan(rows, cols, wy, wx, vy, vx, nearest)


def apply_window(src: np.ndarray, plan: WindowPlan, nodata: float = 0) -> np.ndarray:
    """Resample the source window ``src`` (rows × cols read per ``plan``) to the output grid.

    Nearest keeps the dtype; bilinear returns float32 DN with NaN where any contributing
    source pixel is nodata. Output pixels off the raster are ``nodata`` (NaN for floats)."""
    size = plan.valid_y.size
    if plan.nearest:
        if src.shape == (size, size) and plan.valid_y.all() and plan.valid_x.all() and (
                plan.wy[0] == 0 and plan.wy[-1] == size - 1 and plan.wx[-1] == size - 1):
            return src  # the window is the chip (10 m band, fully on the raster)
        out = src[np.ix_(plan.wy, plan.wx)] if not plan.empty else np.zeros(
            (size, size), src.dtype)
        out = out.copy() if out.base is not None else out
        out[~plan.valid_y, :] = nodata
        out[:, ~plan.valid_x] = nodata
        return out
    if plan.empty:
        return np.full((size, size), np.nan, np.float32)
    y0, y1, wy = plan.wy[0].astype(np.int64), plan.wy[1].astype(np.int64), plan.wy[2]
    x0, x1, wx = plan.wx[0].astype(np.int64), plan.wx[1].astype(np.int64), plan.wx[2]
    srcf = src.astype(np.float32)
    wy32 = wy.astype(np.float32)[:, None]
    wx32 = wx.astype(np.float32)[None, :]
    rows = srcf[y0] + (srcf[y1] - srcf[y0]) * wy32  # (size, cols)
    out = rows[:, x0] + (rows[:, x1] - rows[:, x0]) * wx32
    bad = src == nodata
    if bad.any():
        b = bad[y0] | (bad[y1] & (wy > 0)[:, None])
        out[b[:, x0] | (b[:, x1] & (wx > 0)[None, :])] = np.nan
    out[~plan.valid_y, :] = np.nan
    out[:, ~plan.valid_x] = np.nan
    return out


def read_window(href: str, x_left: float, y_top: float, size: int, res: float,
                resampling: Resampling) -> np.ndarray:
    """DN of ``href`` on a ``size``² grid at ``res`` with top-left (x_left, y_top).

    Reads only the source window the output needs (one decode of the blocks it touches),
    then resamples in NumPy: nearest returns the raster's dtype (0 off the raster), bilinear
    float32 DN (NaN for nodata and off the raster). Coarser rasters (20 m) are upsampled
    between pixel centres, clamped at the raster edge.
    """
    src = _dataset(href)
    nearest = resampling == Resampling.nearest
    if resampling not in (Resampling.nearest, Resampling.bilinear):
        return _read_window_gdal(src, x_left, y_top, size, res, resampling)
    plan = plan_window(src.transform, (src.height, src.width), x_left, y_top, size, res,
                       nearest)
    if plan.empty:
        return (np.zeros((size, size), src.dtypes[0]) if nearest
                else np.full((size, size), np.nan, np.float32))
    data = src.read(1, window=Window.from_slices(plan.rows, plan.cols))
    return apply_window(data, plan)


def _read_window_gdal(src: Any, x_left: float, y_top: float, size: int, res: float,
                      resampling: Resampling) -> np.ndarray:
    """GDAL-resampled read (used for cubic); float32 DN with NaN for nodata/off-raster."""
    t = src.transform
    f = res / t.a
    c = (x_left - t.c) / t.a
    r = (t.f - y_top) / -t.e
    j0 = max(0, math.ceil(-c / f - 1e-9))
    i0 = max(0, math.ceil(-r / f - 1e-9))
    j1 = min(size, math.floor((src.width - c) / f + 1e-9))
    i1 = min(size, math.floor((src.height - r) / f + 1e-9))
    out = np.full((size, size), np.nan, dtype=np.float32)
    if j1 <= j0 or i1 <= i0:
        return out
    win = Window(c + j0 * f, r + i0 * f, (j1 - j0) * f, (i1 - i0) * f)
    part = src.read(1, window=win, out_shape=(i1 - i0, j1 - j0),
                    resampling=resampling).astype(np.float32)
    part[part == 0] = np.nan
    out[i0:i1, j0:j1] = part
    return out


class BlockCache:
    """Decoded COG blocks shared by every thread of the process (LRU, bounded in bytes).

    Each block is decoded once, by the first thread that needs it (others wait for it), so
    two threads never decode the same block twice — unlike per-handle GDAL caches.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._data: OrderedDict[tuple[str, int, int], np.ndarray] = OrderedDict()
        self._inflight: dict[tuple[str, int, int], threading.Event] = {}
        self._bytes = 0

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self._bytes = 0

    def get(self, href: str, i: int, j: int) -> np.ndarray:
        key = (href, i, j)
        while True:
            with self._lock:
                hit = self._data.get(key)
                if hit is not None:
                    self._data.move_to_end(key)
                    return hit
                ev = self._inflight.get(key)
                if ev is None:
                    ev = self._inflight[key] = threading.Event()
                    break
            ev.wait()
        try:
            src = _dataset(href)
            bh, bw = src.block_shapes[0]
            win = Window(j * bw, i * bh, min(bw, src.width - j * bw), min(bh, src.height - i * bh))
            block = src.read(1, window=win)
            block.setflags(write=False)
            with self._lock:
                self._data[key] = block
                self._bytes += block.nbytes
                while self._bytes > self.max_bytes and len(self._data) > 1:
                    _, old = self._data.popitem(last=False)
                    self._bytes -= old.nbytes
            return block
        finally:
            with self._lock:
                self._inflight.pop(key, None)
            ev.set()


BLOCKS = BlockCache(GDAL_CACHE_BYTES)


def read_source_window(href: str, rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
    """The source pixels rows × cols of ``href``, assembled from shared decoded blocks."""
    src = _dataset(href)
    bh, bw = src.block_shapes[0]
    (r0, r1), (c0, c1) = rows, cols
    bi0, bi1 = r0 // bh, (r1 - 1) // bh
    bj0, bj1 = c0 // bw, (c1 - 1) // bw
    if bi0 == bi1 and bj0 == bj1:  # inside one block: a view, no copy
        blk = BLOCKS.get(href, bi0, bj0)
        return blk[r0 - bi0 * bh:r1 - bi0 * bh, c0 - bj0 * bw:c1 - bj0 * bw]
    out = np.empty((r1 - r0, c1 - c0), src.dtypes[0])
    for i in range(bi0, bi1 + 1):
        for j in range(bj0, bj1 + 1):
            blk = BLOCKS.get(href, i, j)
            ya, yb = max(r0, i * bh), min(r1, i * bh + blk.shape[0])
            xa, xb = max(c0, j * bw), min(c1, j * bw + blk.shape[1])
            out[ya - r0:yb - r0, xa - c0:xb - c0] = blk[ya - i * bh:yb - i * bh,
                                                      xa - j * bw:xb - j * bw]
    return out


def _read_plan(href: str, x_left: float, y_top: float, size: int, res: float,
               nearest: bool) -> tuple[np.ndarray | None, WindowPlan]:
    src = _dataset(href)
    plan = plan_window(src.transform, (src.height, src.width), x_left, y_top, size, res,
                       nearest)
    if plan.empty:
        return None, plan
    return read_source_window(href, plan.rows, plan.cols), plan


def read_reflectance_into(href: str, x_left: float, y_top: float, size: int, res: float,
                          resampling: Resampling, scale: float, offset: float,
                          out: np.ndarray) -> None:
    """Reflectance of one band of one chip into ``out`` (size², float32): reads the native
    window once, then converts/resamples in GIL-free kernels (NaN for nodata/off-raster)."""
    if resampling not in (Resampling.nearest, Resampling.bilinear):
        dn = _read_window_gdal(_dataset(href), x_left, y_top, size, res, resampling)
        np.multiply(dn, np.float32(scale), out=out)
        out += np.float32(offset)
        return
    src = _dataset(href)
    same_grid = abs(src.transform.a - res) < 1e-9
    data, plan = _read_plan(href, x_left, y_top, size, res, nearest=same_grid)
    if data is None:
        out[:] = np.nan
        return
    if data.dtype == np.uint16 and plan.nearest:
        if data.shape != (size, size) or not (plan.valid_y.all() and plan.valid_x.all()):
            data = apply_window(data, plan)  # partly off the raster: 0 (nodata) outside
        kernels.lut_into(data, _dn_lut(scale, offset), out)
    elif data.dtype.kind == "u" and not plan.nearest:
        kernels.bilinear_into(data, plan.wy[0].astype(np.int64), plan.wy[1].astype(np.int64),
                              plan.wy[2], plan.wx[0].astype(np.int64),
                              plan.wx[1].astype(np.int64), plan.wx[2], plan.valid_y,
                              plan.valid_x, np.float32(scale), np.float32(offset), out)
    else:  # other dtypes: the NumPy reference path
        dn = apply_window(data, plan)
        np.multiply(dn, np.float32(scale), out=out, casting="unsafe")
        out += np.float32(offset)
        if dn.dtype.kind in "ui":
            np.putmask(out, dn == 0, np.nan)


def read_classes_into(href: str, x_left: float, y_top: float, size: int, res: float,
                      out: np.ndarray) -> None:
    """Class raster (SCL) of one chip into ``out`` (size², uint8), nearest, 0 off-raster."""
    data, plan = _read_plan(href, x_left, y_top, size, res, nearest=True)
    if data is None:
        out[:] = 0
        return
    kernels.nearest_into(data, np.asarray(plan.wy, np.int64), np.asarray(plan.wx, np.int64),
                         plan.valid_y, plan.valid_x, out)


@functools.lru_cache(maxsize=64)
def _dn_lut(scale: float, offset: float) -> np.ndarray:
    """float32 reflectance for every uint16 DN (DN 0, nodata → NaN)."""
    lut = np.arange(65536, dtype=np.float32) * np.float32(scale) + np.float32(offset)
    lut[0] = np.nan
    lut.setflags(write=False)
    return lut


def read_batch(records: Sequence[tuple[Any, ...]], size: int, res: float,
               resampling: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read a batch → (reflectance float32 (chip, band, y, x), scl uint8 (chip, y, x),
    read_error bool (chip,)).

    Each record is (hrefs, scales, offsets, scl_href, x_left, y_top). DN 0 → NaN. A chip
    whose rasters cannot be read (missing or corrupt file) is all-NaN with read_error set
    (its error is logged); the rest of the batch is unaffected.
    """
    rs = _RESAMPLING[resampling]
    nb = len(records[0][0]) if records else 0
    refl_out = np.empty((len(records), nb, size, size), dtype=np.float32)
    scl_out = np.zeros((len(records), size, size), dtype=np.uint8)
    err = np.zeros(len(records), dtype=bool)
    for k, (hrefs, scales, offsets, scl_href, x_left, y_top) in enumerate(records):
        try:
            for b, href in enumerate(hrefs):
                read_reflectance_into(href, x_left, y_top, size, res, rs, scales[b],
                                      offsets[b], refl_out[k, b])
            read_classes_into(scl_href, x_left, y_top, size, res, scl_out[k])
        except (SceneError, rasterio.errors.RasterioError, OSError) as exc:
            log.warning("chip at (%.1f, %.1f): read failed, recorded as read_error: %s",
                        x_left, y_top, exc)
            refl_out[k] = np.nan
            scl_out[k] = 0
            err[k] = True
    return refl_out, scl_out, err


def _item_assets(stack: xr.DataArray, bands: Sequence[str]) -> dict[str, dict[str, Any]]:
    """item id → {hrefs, scales, offsets, scl} from the stack's per-(time, band) coords."""
    for coord in ("href", "scale", "offset"):
        if coord not in stack.coords:
            raise SceneError(f"the stack has no '{coord}' coordinate; build it with "
                             "s2xr.scenes.stack_scenes")
    missing = [b for b in (*bands, "scl") if b not in stack.band.values]
    if missing:
        raise SceneError(f"the stack lacks band(s) {missing}; stack them with stack_scenes")
    out = {}
    ids = stack.coords["id"].values
    for t, item_id in enumerate(ids):
        sub = stack.isel(time=t)
        out[str(item_id)] = {
            "hrefs": tuple(str(sub.href.sel(band=b).item()) for b in bands),
            "scales": tuple(float(sub.scale.sel(band=b).item()) for b in bands),
            "offsets": tuple(float(sub.offset.sel(band=b).item()) for b in bands),
            "scl": str(sub.href.sel(band="scl").item()),
        }
    return out


def cut_chips(stack: xr.DataArray | Mapping[int, xr.DataArray], plan: pd.DataFrame,
              spec: ChipSpec | None = None) -> xr.Dataset:
    """Lazy chips for ``plan`` (from :func:`plan_chips`) → ``xr.Dataset``:

    * ``reflectance(chip, band, y, x)`` float32 surface reflectance (scale/offset applied,
      NaN where nodata or off the raster),
    * ``scl(chip, y, x)`` uint8 SCL classes (0 = nodata),
    * ``valid_frac(chip)`` fraction of pixels with data,
    * ``read_error(chip)`` bool: its rasters could not be read (all NaN; logged),
    * per-chip coords chip_id, mmsi, time (sensing), item_id, epsg, lon, lat, x_left,
      y_top, tile_id, and ``transform(chip, affine)`` (GDAL order a, b, c, d, e, f).

    ``stack`` is the stack (or ``{epsg: stack}``) from :func:`stack_scenes`: it supplies the
    asset hrefs and scale/offset of every item in the plan. Nothing is read until computed;
    chunks along ``chip`` are ``spec.batch_size``.
    """
    spec = spec or ChipSpec()
    stacks = dict(stack) if isinstance(stack, Mapping) else {None: stack}
    bands = tuple(spec.all_bands)
    assets: dict[str, dict[str, Any]] = {}
    for s in stacks.values():
        assets.update(_item_assets(s, bands))
    missing = sorted(set(plan["item_id"]) - set(assets))
    if missing:
        raise SceneError(f"plan items not in the stack: {missing[:5]}")
    size, res = spec.size, spec.resolution
    records = [(assets[i]["hrefs"], assets[i]["scales"], assets[i]["offsets"], assets[i]["scl"],
                float(xl), float(yt))
               for i, xl, yt in zip(plan["item_id"], plan["x_left"], plan["y_top"], strict=True)]
    n = len(records)
    bs = spec.batch_size
    r_blocks, s_blocks, e_blocks = [], [], []
    for s in range(0, n, bs):
        part = records[s:s + bs]
        m = len(part)
        task = dask.delayed(read_batch, pure=True, nout=3)(part, size, res, spec.resampling)
        r_blocks.append(da.from_delayed(task[0], shape=(m, len(bands), size, size),
                                        dtype=np.float32))
        s_blocks.append(da.from_delayed(task[1], shape=(m, size, size), dtype=np.uint8))
        e_blocks.append(da.from_delayed(task[2], shape=(m,), dtype=bool))
    if r_blocks:
        refl = da.concatenate(r_blocks, axis=0)
        scl = da.concatenate(s_blocks, axis=0)
        read_error = da.concatenate(e_blocks, axis=0)
    else:
        refl = da.zeros((0, len(bands), size, size), dtype=np.float32)
        scl = da.zeros((0, size, size), dtype=np.uint8)
        read_error = da.zeros((0,), dtype=bool)
    transform = np.stack([np.full(n, res), np.zeros(n), plan["x_left"].to_numpy(float),
                          np.zeros(n), np.full(n, -res), plan["y_top"].to_numpy(float)], axis=1)
    coords = {
        "chip_id": ("chip", plan["chip_id"].astype(object).to_numpy()),
        "mmsi": ("chip", plan["mmsi"].to_numpy(np.int64)),
        "time": ("chip", pd.to_datetime(plan["scene_datetime"], utc=True).dt.tz_localize(None)
                 .to_numpy("datetime64[ns]")),
        "item_id": ("chip", plan["item_id"].astype(object).to_numpy()),
        "tile_id": ("chip", plan["tile_id"].astype(object).to_numpy()),
        "epsg": ("chip", plan["epsg"].to_numpy(np.int32)),
        "lon": ("chip", plan["lon"].to_numpy(float)),
        "lat": ("chip", plan["lat"].to_numpy(float)),
        "x_left": ("chip", plan["x_left"].to_numpy(float)),
        "y_top": ("chip", plan["y_top"].to_numpy(float)),
        "transform": (("chip", "affine"), transform),
        "band": ("band", np.array(bands, dtype=object)),
    }
    ds = xr.Dataset(
        {"reflectance": (("chip", "band", "y", "x"), refl), "scl": (("chip", "y", "x"), scl)},
        coords=coords,
        attrs={"resolution_m": res, "chip_size": size, "reflectance": "surface reflectance "
               "(L2A DN × scale + offset)", "resampling_20m": spec.resampling,
               "scl_resampling": "nearest"},
    )
    ds["read_error"] = ("chip", read_error)
    ds["valid_frac"] = ds["reflectance"].isel(band=0).notnull().mean(("y", "x")).astype(
        np.float32)
    log.info("cut graph: %d chip(s) in %d task(s) of ≤ %d", n, len(r_blocks), bs)
    return ds
