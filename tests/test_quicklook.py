"""Quicklooks use one fixed reflectance stretch for every chip: open water stays dark, a ship
is bright, the same reflectance gets the same colour in every chip."""

from __future__ import annotations

import numpy as np

from s2xr.store.files import QUICKLOOK_GAMMA, QUICKLOOK_MAX, rgb_quicklook

BANDS = ("blue", "green", "red", "nir")


def _chip(water: float, ship: float | None = None) -> np.ndarray:
    rng = np.random.default_rng(1)
    refl = (water + 0.003 * rng.standard_normal((4, 64, 64))).astype(np.float32)
    if ship is not None:
        refl[:, 30:34, 28:36] = ship
    return refl


def test_water_stays_dark_and_a_ship_is_bright():
    img = rgb_quicklook(_chip(0.02, ship=0.25), BANDS)
    assert img.shape == (64, 64, 3) and img.dtype == np.uint8
    water = img[:20]
    assert water.mean() < 60  # dark, and noise does not become colour
    assert np.ptp(water.astype(int), axis=2).max() < 25
    assert img[30:34, 28:36].min() > 200


def test_the_stretch_is_the_same_for_every_chip():
    """A per-chip stretch made the same water black in one chip and white in another."""
    a = rgb_quicklook(_chip(0.02), BANDS)
    b = rgb_quicklook(_chip(0.02, ship=0.3), BANDS)
    np.testing.assert_array_equal(a[:20], b[:20])
    expect = round(255 * (0.1 / QUICKLOOK_MAX) ** (1 / QUICKLOOK_GAMMA))
    flat = np.full((4, 8, 8), 0.1, np.float32)
    assert abs(int(rgb_quicklook(flat, BANDS)[0, 0, 0]) - expect) <= 1


def test_nodata_is_black_and_bright_clips_to_white():
    refl = np.full((4, 8, 8), np.nan, np.float32)
    refl[:, 4:] = 0.9
    img = rgb_quicklook(refl, BANDS)
    assert (img[:4] == 0).all() and (img[4:] == 255).all()
