"""The GIL-free kernels give exactly the NumPy reference results."""

import numpy as np
import pytest
from affine import Affine

from s2xr.scenes import kernels
from s2xr.scenes.windows import apply_window, plan_window
from s2xr.scenes.windows import dn_lut as _dn_lut


def reference(src, plan, scale, offset):
    dn = apply_window(src, plan)
    out = np.empty(dn.shape, np.float32)
    np.multiply(dn, np.float32(scale), out=out, casting="unsafe")
    out += np.float32(offset)
    if dn.dtype.kind in "ui":
        np.putmask(out, dn == 0, np.nan)
    return out


@pytest.mark.parametrize("x_left,y_top", [(1000.0, 9000.0), (1010.0, 8990.0), (-500.0, 9990.0),
                                          (9000.0, 1500.0), (5010.0, 5010.0)])
def test_bilinear_and_nearest_match_numpy(x_left, y_top):
    rng = np.random.default_rng(0)
    src = rng.integers(1, 4000, (500, 500)).astype(np.uint16)
    src[rng.random(src.shape) < 0.01] = 0  # nodata speckles
    t20 = Affine(20, 0, 0, 0, -20, 10000)
    plan = plan_window(t20, src.shape, x_left, y_top, 256, 10.0, nearest=False)
    data = src[plan.rows[0]:plan.rows[1], plan.cols[0]:plan.cols[1]]
    got = np.empty((256, 256), np.float32)
    kernels.bilinear_into(data, plan.wy[0].astype(np.int64), plan.wy[1].astype(np.int64),
                          plan.wy[2], plan.wx[0].astype(np.int64), plan.wx[1].astype(np.int64),
                          plan.wx[2], plan.valid_y, plan.valid_x, np.float32(1e-4),
                          np.float32(-0.1), got)
    np.testing.assert_array_equal(got, reference(data, plan, 1e-4, -0.1))
    near = plan_window(t20, src.shape, x_left, y_top, 256, 10.0, nearest=True)
    data = src[near.rows[0]:near.rows[1], near.cols[0]:near.cols[1]].astype(np.uint8)
    out8 = np.empty((256, 256), np.uint8)
    kernels.nearest_into(data, np.asarray(near.wy, np.int64), np.asarray(near.wx, np.int64),
                         near.valid_y, near.valid_x, out8)
    np.testing.assert_array_equal(out8, apply_window(data, near))


def test_lut_matches_arithmetic():
    dn = np.arange(0, 65536, dtype=np.uint16).reshape(256, 256)
    out = np.empty(dn.shape, np.float32)
    kernels.lut_into(dn, _dn_lut(1e-4, -0.1), out)
    expect = dn.astype(np.float32) * np.float32(1e-4) + np.float32(-0.1)
    expect[dn == 0] = np.nan
    np.testing.assert_array_equal(out, expect)
