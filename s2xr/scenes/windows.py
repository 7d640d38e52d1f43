"""Source windows and resampling operators from a raster's grid to an output grid (NumPy).

An output grid is ``(height, width)`` pixels of ``res`` metres with top-left corner
``(x_left, y_top)``; a source raster is north-up with an affine ``transform`` and ``shape``.
:func:`plan_window` says which integer source window to read and how to resample it (nearest
or separable bilinear between pixel centres, clamped at the raster edge);
:func:`apply_window` is the NumPy reference applying it (the numba kernels in
:mod:`s2xr.scenes.kernels` do the same without the GIL). Pure functions, no I/O.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np


def _hw(size: int | tuple[int, int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


@dataclass(frozen=True)
class WindowPlan:
    """How to build one output window from a raster: the integer source window to read
    (``rows``, ``cols`` half-open) and per-axis resampling operators."""

    rows: tuple[int, int]
    cols: tuple[int, int]
    wy: np.ndarray  # (3, height) i0, i1, weight for bilinear; (height,) indices for nearest
    wx: np.ndarray
    valid_y: np.ndarray  # (height,) bool: output row centre lies on the raster
    valid_x: np.ndarray
    nearest: bool

    @property
    def empty(self) -> bool:
        return self.rows[1] <= self.rows[0] or self.cols[1] <= self.cols[0]

    @property
    def shape(self) -> tuple[int, int]:
        """The output window's (height, width)."""
        return self.valid_y.size, self.valid_x.size


_ALL_VALID: dict[int, np.ndarray] = {}


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


def plan_window(transform: Any, shape: tuple[int, int], x_left: float, y_top: float,
                size: int | tuple[int, int], res: float, nearest: bool) -> WindowPlan:
    """The :class:`WindowPlan` for an output grid of ``size`` (an int for a square, or
    (height, width)) pixels at ``res`` with top-left (x_left, y_top), on a raster with
    ``transform`` (north-up) and ``shape`` (rows, cols)."""
    h, w = _hw(size)
    f = res / transform.a
    c = (x_left - transform.c) / transform.a
    r = (transform.f - y_top) / -transform.e
    exact = abs(f - 1.0) < 1e-9 and abs(c - round(c)) < 1e-6 and abs(r - round(r)) < 1e-6
    if exact:  # same grid: a plain integer window
        c, r = round(c), round(r)
        vy = (np.arange(h) + r >= 0) & (np.arange(h) + r < shape[0])
        vx = (np.arange(w) + c >= 0) & (np.arange(w) + c < shape[1])
        rows = (max(r, 0), min(r + h, shape[0]))
        cols = (max(c, 0), min(c + w, shape[1]))
        wy = np.clip(np.arange(h) + r - rows[0], 0, max(rows[1] - rows[0] - 1, 0))
        wx = np.clip(np.arange(w) + c - cols[0], 0, max(cols[1] - cols[0] - 1, 0))
        return WindowPlan(rows, cols, wy, wx, vy, vx, True)
    rows, wy, vy = _axis(r, f, h, shape[0], nearest)
    cols, wx, vx = _axis(c, f, w, shape[1], nearest)
    return WindowPlan(rows, cols, wy, wx, vy, vx, nearest)


def apply_window(src: np.ndarray, plan: WindowPlan, nodata: float = 0) -> np.ndarray:
    """Resample the source window ``src`` (rows × cols read per ``plan``) to the output grid.

    Nearest keeps the dtype; bilinear returns float32 DN with NaN where any contributing
    source pixel is nodata. Output pixels off the raster are ``nodata`` (NaN for floats)."""
    h, w = plan.shape
    if plan.nearest:
        if src.shape == (h, w) and plan.valid_y.all() and plan.valid_x.all() and (
                plan.wy[0] == 0 and plan.wy[-1] == h - 1 and plan.wx[-1] == w - 1):
            return src  # the window is the output (same grid, fully on the raster)
        out = src[np.ix_(plan.wy, plan.wx)] if not plan.empty else np.zeros((h, w), src.dtype)
        out = out.copy() if out.base is not None else out
        out[~plan.valid_y, :] = nodata
        out[:, ~plan.valid_x] = nodata
        return out
    if plan.empty:
        return np.full((h, w), np.nan, np.float32)
    y0, y1, wy = plan.wy[0].astype(np.int64), plan.wy[1].astype(np.int64), plan.wy[2]
    x0, x1, wx = plan.wx[0].astype(np.int64), plan.wx[1].astype(np.int64), plan.wx[2]
    srcf = src.astype(np.float32)
    wy32 = wy.astype(np.float32)[:, None]
    wx32 = wx.astype(np.float32)[None, :]
    rows = srcf[y0] + (srcf[y1] - srcf[y0]) * wy32  # (h, cols)
    out = rows[:, x0] + (rows[:, x1] - rows[:, x0]) * wx32
    bad = src == nodata
    if bad.any():
        b = bad[y0] | (bad[y1] & (wy > 0)[:, None])
        out[b[:, x0] | (b[:, x1] & (wx > 0)[None, :])] = np.nan
    out[~plan.valid_y, :] = np.nan
    out[:, ~plan.valid_x] = np.nan
    return out


@functools.lru_cache(maxsize=64)
def dn_lut(scale: float, offset: float) -> np.ndarray:
    """float32 reflectance for every uint16 DN (DN 0, nodata → NaN)."""
    lut = np.arange(65536, dtype=np.float32) * np.float32(scale) + np.float32(offset)
    lut[0] = np.nan
    lut.setflags(write=False)
    return lut
