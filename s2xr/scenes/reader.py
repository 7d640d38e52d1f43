"""Read windows of COG assets onto an output grid: the pixel source under s2xr's loader.

Rasterio datasets are opened once per thread (they are not thread-safe) and decoded COG
blocks are shared by every thread of the process (:class:`BlockCache`): each block is
decoded once, however many output windows touch it. Resampling runs in GIL-free kernels
(:mod:`s2xr.scenes.kernels`), so two threads really read two windows at once.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.windows import Window

from s2xr.errors import AssetReadError, SceneError
from s2xr.scenes import handles, kernels
from s2xr.scenes.handles import backoff, forget_dataset, forget_handles, open_dataset, was_opened
from s2xr.scenes.remote import is_remote
from s2xr.scenes.windows import WindowPlan, apply_window, dn_lut, plan_window

log = logging.getLogger(__name__)

RESAMPLING = {"bilinear": Resampling.bilinear, "cubic": Resampling.cubic,
              "nearest": Resampling.nearest}
BLOCK_CACHE_BYTES = 256 * 2**20


def reset_dataset_cache() -> None:
    """Drop the shared decoded blocks and make every thread close its dataset handles on its
    next read. Used between benchmark runs and after files are replaced."""
    forget_handles()
    BLOCKS.clear()


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

    @property
    def nbytes(self) -> int:
        """Bytes of the decoded blocks held now (at most ``max_bytes``)."""
        return self._bytes

    def wanted(self, href: str, i: int, j: int) -> bool:
        """Whether block (``i``, ``j``) of ``href`` is neither cached nor being fetched."""
        key = (href, i, j)
        with self._lock:
            return key not in self._data and key not in self._inflight

    def get(self, href: str, i: int, j: int) -> np.ndarray:
        """Block (row ``i``, column ``j``) of ``href``'s first band, decoded once (a block
        another thread is fetching is waited for)."""
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
        return self._load(key, ev)

    def fetch(self, href: str, i: int, j: int) -> None:
        """Fetch block (``i``, ``j``) of ``href`` into the cache unless it is cached or being
        fetched (then return at once: an I/O thread never waits for another one's fetch)."""
        key = (href, i, j)
        with self._lock:
            if key in self._data or key in self._inflight:
                return
            ev = self._inflight[key] = threading.Event()
        self._load(key, ev)

    def _load(self, key: tuple[str, int, int], ev: threading.Event) -> np.ndarray:
        try:
            block = _read_block(*key)
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


BLOCKS = BlockCache(BLOCK_CACHE_BYTES)


def _read_block(href: str, i: int, j: int) -> np.ndarray:
    """Block (i, j) of ``href``'s first band, read with up to
    :data:`~s2xr.scenes.handles.READ_ATTEMPTS` tries (back-off with jitter, handle reopened
    between tries; :func:`open_dataset` retries opens itself)."""
    for attempt in range(handles.READ_ATTEMPTS):
        src = open_dataset(href)
        try:
            bh, bw = src.block_shapes[0]
            win = Window(j * bw, i * bh, min(bw, src.width - j * bw),
                         min(bh, src.height - i * bh))
            return src.read(1, window=win)
        except (SceneError, rasterio.errors.RasterioError, OSError) as exc:
            if attempt == handles.READ_ATTEMPTS - 1 or not is_remote(href):  # local: final
                raise AssetReadError(href, f"{href} block ({i}, {j}): {exc} (after {attempt + 1} "
                                 "tries)") from exc
            forget_dataset(href)
            delay = backoff(attempt)
            log.info("%s block (%d, %d): %s; retry in %.2f s", href, i, j, exc, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


_POOLS: dict[int, ThreadPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()


def _pool(n: int) -> ThreadPoolExecutor:
    with _POOLS_LOCK:
        if n not in _POOLS:
            _POOLS[n] = ThreadPoolExecutor(max_workers=n, thread_name_prefix="s2xr-io")
        return _POOLS[n]


def source_window(href: str, x_left: float, y_top: float, shape: tuple[int, int],
                  res: float) -> tuple[str, tuple[int, int], tuple[int, int]]:
    """(href, rows, cols): the source pixels an output grid needs from ``href`` (with the
    bilinear halo for a coarser raster)."""
    src = open_dataset(href)
    same = abs(src.transform.a - res) < 1e-9
    plan = plan_window(src.transform, (src.height, src.width), x_left, y_top, shape, res,
                       nearest=same)
    return href, plan.rows, plan.cols


def _blocks_under(windows: Sequence[tuple[str, tuple[int, int], tuple[int, int]]]
                  ) -> dict[tuple[str, int, int], None]:
    wanted: dict[tuple[str, int, int], None] = {}
    for href, (r0, r1), (c0, c1) in windows:
        if r1 <= r0 or c1 <= c0:
            continue
        bh, bw = open_dataset(href).block_shapes[0]
        for bi in range(r0 // bh, (r1 - 1) // bh + 1):
            for bj in range(c0 // bw, (c1 - 1) // bw + 1):
                wanted[(href, bi, bj)] = None
    return wanted


def prefetch_windows(windows: Sequence[tuple[str, tuple[int, int], tuple[int, int]]],
                     io_threads: int) -> None:
    """Fetch the COG blocks under ``windows`` (href, rows, cols) into the shared block cache,
    ``io_threads`` requests in flight (independent of the CPU threads that decode them).
    Blocks already cached or being fetched are not requested again (the reader waits for
    those being fetched when it needs them). Raises the first read error."""
    wanted = [key for key in _blocks_under(windows) if BLOCKS.wanted(*key)]
    if len(wanted) < 2:
        return  # nothing to overlap: the reader fetches it itself
    futures = [_pool(io_threads).submit(BLOCKS.fetch, *key) for key in wanted]
    for f in futures:
        f.result()


def _fetch_quietly(href: str, i: int, j: int) -> None:
    try:
        BLOCKS.fetch(href, i, j)
    except (SceneError, rasterio.errors.RasterioError, OSError) as exc:
        # the reader that needs the block fetches it again and decides (read error or retry)
        log.debug("read-ahead of %s block (%d, %d) failed: %s", href, i, j, exc)


def _open_quietly(href: str) -> None:
    try:
        open_dataset(href)
    except (SceneError, rasterio.errors.RasterioError, OSError) as exc:
        log.debug("read-ahead open of %s failed: %s", href, exc)


def _start_windows(hrefs: Sequence[str], x_left: float, y_top: float, shape: tuple[int, int],
                   res: float, io_threads: int) -> None:
    try:
        wanted = _blocks_under([source_window(h, x_left, y_top, shape, res) for h in hrefs])
    except (SceneError, rasterio.errors.RasterioError, OSError) as exc:
        log.debug("read-ahead at (%.1f, %.1f) not started: %s", x_left, y_top, exc)
        return
    pool = _pool(io_threads)
    for key in wanted:
        if BLOCKS.wanted(*key):
            pool.submit(_fetch_quietly, *key)


def start_fetching(areas: Sequence[tuple[Sequence[str], float, float, tuple[int, int], float]],
                   io_threads: int) -> None:
    """Start fetching, and return at once: the COG blocks of ``hrefs`` under each output
    window (hrefs, x_left, y_top, (height, width), res) go into the shared block cache
    ``io_threads`` requests at a time, behind any fetch already queued. Assets not yet
    opened in this process are opened first, concurrently (one task per asset). Failures
    are left to the reader that needs the block. Local files are not read ahead (nothing
    to overlap)."""
    pool = _pool(io_threads)
    unopened = {h for hrefs, *_ in areas for h in hrefs if is_remote(h) and not was_opened(h)}
    for href in unopened:  # first opens concurrently, before the windows that need them
        pool.submit(_open_quietly, href)
    for hrefs, x_left, y_top, shape, res in areas:
        remote = [h for h in hrefs if is_remote(h)]
        if remote:
            pool.submit(_start_windows, remote, x_left, y_top, shape, res, io_threads)


def read_source_window(href: str, rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
    """The source pixels rows × cols of ``href``, assembled from shared decoded blocks."""
    src = open_dataset(href)
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


def _read_plan(href: str, x_left: float, y_top: float, shape: tuple[int, int], res: float,
               nearest: bool) -> tuple[np.ndarray | None, WindowPlan]:
    src = open_dataset(href)
    plan = plan_window(src.transform, (src.height, src.width), x_left, y_top, shape, res,
                       nearest)
    if plan.empty:
        return None, plan
    return read_source_window(href, plan.rows, plan.cols), plan


def _read_window_gdal(src: Any, x_left: float, y_top: float, shape: tuple[int, int],
                      res: float, resampling: Resampling) -> np.ndarray:
    """GDAL-resampled read (used for cubic); float32 DN with NaN for nodata/off-raster."""
    h, w = shape
    t = src.transform
    f = res / t.a
    c = (x_left - t.c) / t.a
    r = (t.f - y_top) / -t.e
    j0 = max(0, math.ceil(-c / f - 1e-9))
    i0 = max(0, math.ceil(-r / f - 1e-9))
    j1 = min(w, math.floor((src.width - c) / f + 1e-9))
    i1 = min(h, math.floor((src.height - r) / f + 1e-9))
    out = np.full((h, w), np.nan, dtype=np.float32)
    if j1 <= j0 or i1 <= i0:
        return out
    win = Window(c + j0 * f, r + i0 * f, (j1 - j0) * f, (i1 - i0) * f)
    part = src.read(1, window=win, out_shape=(i1 - i0, j1 - j0),
                    resampling=resampling).astype(np.float32)
    part[part == 0] = np.nan
    out[i0:i1, j0:j1] = part
    return out


def read_reflectance_into(href: str, x_left: float, y_top: float, res: float,
                          resampling: Resampling, scale: float, offset: float,
                          out: np.ndarray) -> None:
    """Reflectance of one band on the grid of ``out`` ((height, width) float32, top-left
    (x_left, y_top), ``res`` metres): reads the native window once, then converts/resamples
    in GIL-free kernels. NaN for nodata (DN 0) and off the raster. A raster on the output
    grid is copied; a coarser one (20 m) is upsampled with ``resampling``."""
    shape = out.shape
    if resampling not in (Resampling.nearest, Resampling.bilinear):
        dn = _read_window_gdal(open_dataset(href), x_left, y_top, shape, res, resampling)
        np.multiply(dn, np.float32(scale), out=out)
        out += np.float32(offset)
        return
    src = open_dataset(href)
    same_grid = abs(src.transform.a - res) < 1e-9
    data, plan = _read_plan(href, x_left, y_top, shape, res,
                            nearest=same_grid or resampling == Resampling.nearest)
    if data is None:
        out[:] = np.nan
        return
    if data.dtype == np.uint16 and plan.nearest:
        if not same_grid or data.shape != shape or not (plan.valid_y.all()
                                                        and plan.valid_x.all()):
            data = apply_window(data, plan)  # resampled / partly off the raster: 0 outside
        kernels.lut_into(data, dn_lut(scale, offset), out)
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


def read_classes_into(href: str, x_left: float, y_top: float, res: float,
                      out: np.ndarray) -> None:
    """A class raster (SCL) on the grid of ``out`` ((height, width) uint8), nearest, 0 off
    the raster."""
    data, plan = _read_plan(href, x_left, y_top, out.shape, res, nearest=True)
    if data is None:
        out[:] = 0
        return
    kernels.nearest_into(data, np.asarray(plan.wy, np.int64), np.asarray(plan.wx, np.int64),
                         plan.valid_y, plan.valid_x, out)


def read_window(href: str, x_left: float, y_top: float, size: int | tuple[int, int],
                res: float, resampling: str = "nearest") -> np.ndarray:
    """DN of ``href`` on a ``size`` grid at ``res`` with top-left (x_left, y_top).

    Nearest returns the raster's dtype (0 off the raster), bilinear/cubic float32 DN (NaN for
    nodata and off the raster). Reads only the source window the output needs.
    """
    src = open_dataset(href)
    rs = RESAMPLING[resampling]
    shape = (size, size) if isinstance(size, int) else size
    if rs == Resampling.cubic:
        return _read_window_gdal(src, x_left, y_top, shape, res, rs)
    nearest = rs == Resampling.nearest
    plan = plan_window(src.transform, (src.height, src.width), x_left, y_top, shape, res,
                       nearest)
    if plan.empty:
        return (np.zeros(shape, src.dtypes[0]) if nearest
                else np.full(shape, np.nan, np.float32))
    data = src.read(1, window=Window.from_slices(plan.rows, plan.cols))
    return apply_window(data, plan)
