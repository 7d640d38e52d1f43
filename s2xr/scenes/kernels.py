"""Fused, GIL-free kernels for the work after decoding (numba, ``nogil=True``).

Dask runs the loader's block tasks on threads; GDAL releases the GIL while it decodes, and
these kernels release it while they turn DN into reflectance, so two threads really load two
blocks at once. Each kernel writes into a preallocated output and matches the NumPy
reference in :func:`s2xr.scenes.windows.apply_window` exactly (tests/test_kernels.py).
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(nogil=True, cache=True)
def lut_into(dn: np.ndarray, lut: np.ndarray, out: np.ndarray) -> None:
    """out[i, j] = lut[dn[i, j]] (uint16 DN → float32 reflectance, NaN for nodata)."""
    h, w = dn.shape
    for i in range(h):
        for j in range(w):
            out[i, j] = lut[dn[i, j]]


@njit(nogil=True, cache=True)
def bilinear_into(src: np.ndarray, y0: np.ndarray, y1: np.ndarray, wy: np.ndarray,
                  x0: np.ndarray, x1: np.ndarray, wx: np.ndarray, valid_y: np.ndarray,
                  valid_x: np.ndarray, scale: np.float32, offset: np.float32,
                  out: np.ndarray) -> None:
    """2-tap separable bilinear resample of uint DN ``src`` into reflectance ``out``.

    A pixel is NaN when any contributing source pixel (weight > 0) is 0 (nodata), or when
    it lies off the raster. Arithmetic in float32, in the same order as the NumPy path.
    """
    h = y0.size
    w = x0.size
    nan = np.float32(np.nan)
    for i in range(h):
        a0 = y0[i]
        a1 = y1[i]
        fy = np.float32(wy[i])
        for j in range(w):
            if not (valid_y[i] and valid_x[j]):
                out[i, j] = nan
                continue
            b0 = x0[j]
            b1 = x1[j]
            fx = np.float32(wx[j])
            p00 = src[a0, b0]
            p01 = src[a0, b1]
            p10 = src[a1, b0]
            p11 = src[a1, b1]
            if (p00 == 0 or (fx > 0 and p01 == 0) or (fy > 0 and p10 == 0) or
                    (fx > 0 and fy > 0 and p11 == 0)):
                out[i, j] = nan
                continue
            r0 = np.float32(p00) + (np.float32(p10) - np.float32(p00)) * fy
            r1 = np.float32(p01) + (np.float32(p11) - np.float32(p01)) * fy
            v = r0 + (r1 - r0) * fx
            out[i, j] = v * scale + offset


@njit(nogil=True, cache=True)
def nearest_into(src: np.ndarray, iy: np.ndarray, ix: np.ndarray, valid_y: np.ndarray,
                 valid_x: np.ndarray, out: np.ndarray) -> None:
    """out[i, j] = src[iy[i], ix[j]] (0 off the raster): SCL classes."""
    for i in range(iy.size):
        for j in range(ix.size):
            out[i, j] = src[iy[i], ix[j]] if (valid_y[i] and valid_x[j]) else 0
