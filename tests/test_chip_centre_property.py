"""Property: a ship anywhere on the grid lands on its chip's centre pixel.

Each stack pixel holds its own address (band b, row r, col c → b·H·W + r·W + c, exact in
float32), so a chip says exactly which stack pixels it was cut from. Ships are placed in UTM
metres — anywhere, within a chip half-width of the tile's edges, and a fraction of a metre
either side of a 20 m pixel border (even rows/cols: 20 m bands change value there) — turned
into lon/lat as AIS gives them, then planned (plan_chips) and cut (cut_chips) from a stack
chunked in several ways. The chip's pixel (size//2, size//2) must be the ship's pixel, every
other chip pixel its neighbour at the same offset, and pixels off the tile NaN (SCL 0).
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import xarray as xr
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pyproj import Transformer

from s2xr.chips import cut_chips, plan_chips
from s2xr.config import ChipSpec

H, W, RES = 90, 100, 10.0  # a small tile (not square, so rows and cols cannot be swapped)
SIZE = 32
HALF = SIZE // 2
BANDS = ("blue", "green", "red", "nir")
SPEC = ChipSpec(size=SIZE, bands=BANDS, include_swir=False)
WHEN = pd.Timestamp("2026-09-30T11:06:21Z")
# (EPSG, x0, y0): a northern and a southern UTM zone; origins on the 20 m and 60 m grids
GRIDS = {32630: (399960.0, 4000020.0), 32733: (600000.0, 7300000.0)}
SCL_WATER = 6
assert len(BANDS) * H * W < 2 ** 24  # addresses are exact in float32


@functools.cache
def to_lonlat(epsg: int) -> Transformer:
    return Transformer.from_crs(epsg, 4326, always_xy=True)


@functools.cache
def address() -> np.ndarray:
    b, r, c = np.meshgrid(np.arange(len(BANDS)), np.arange(H), np.arange(W), indexing="ij")
    return (b * H * W + r * W + c).astype(np.float32)


def make_stack(epsg: int, chunks: tuple[int, int, int] | None) -> xr.DataArray:
    x0, y0 = GRIDS[epsg]
    data = np.concatenate([address(), np.full((1, H, W), SCL_WATER, np.float32)])[None]
    stack = xr.DataArray(
        data, dims=("time", "band", "y", "x"),
        coords={"time": [WHEN.tz_localize(None).to_datetime64()], "id": ("time", ["A"]),
                "band": [*BANDS, "scl"], "x": x0 + RES / 2 + RES * np.arange(W),
                "y": y0 - RES / 2 - RES * np.arange(H)},
        attrs={"resolution": RES})
    if chunks is not None:
        stack = stack.chunk({"time": 1, "band": chunks[0], "y": chunks[1], "x": chunks[2]})
    return stack


def items(epsg: int) -> pd.DataFrame:
    x0, y0 = GRIDS[epsg]
    return pd.DataFrame([{
        "item_id": "A", "collection": "sentinel-2-l2a", "datetime": WHEN, "tile_id": "30STE",
        "epsg": epsg, "platform": "sentinel-2a", "satellite": "S2A", "datatake": "DT1",
        "processing_baseline": "05.11", "sequence": 0, "cloud_cover": 0.0, "x0": x0,
        "y0": y0, "res": RES, "height": H, "width": W, "hrefs": {}}])


def pixel(n: int) -> st.SearchStrategy[int]:
    """A row or column index: anywhere, near either edge, or a 20 m pixel border."""
    return st.one_of(st.integers(0, n - 1), st.integers(0, HALF + 1),
                     st.integers(n - HALF - 2, n - 1),
                     st.integers(0, (n - 1) // 2).map(lambda k: 2 * k))


# metres into the pixel from its west (or north) edge: just past it, just before the next
INSIDE = st.one_of(st.floats(0.01, 0.99), st.floats(9.01, 9.99), st.floats(0.01, 9.99))
SHIP = st.tuples(pixel(H), pixel(W), INSIDE, INSIDE)
CHUNKS = st.one_of(st.none(), st.tuples(st.sampled_from([1, 2, 5]), st.integers(7, H),
                                        st.integers(7, W)))


def check(epsg: int, ships: list[tuple[int, int, float, float]],
          chunks: tuple[int, int, int] | None) -> None:
    x0, y0 = GRIDS[epsg]
    rows = []
    for k, (r, c, dy, dx) in enumerate(ships):
        lon, lat = to_lonlat(epsg).transform(x0 + c * RES + dx, y0 - r * RES - dy)
        rows.append({"mmsi": 224_000_000 + k, "item_id": "A", "target_key": f"t{k}",
                     "lat": lat, "lon": lon})
    res = plan_chips(pd.DataFrame(rows), items(epsg), SPEC)
    assert res.rejects.empty, res.rejects
    plan = res.plan
    assert len(plan) == len(ships)
    chips = cut_chips(make_stack(epsg, chunks), plan, SPEC).compute(scheduler="synchronous")
    refl, scl = chips["reflectance"].values, chips["scl"].values
    assert [str(b) for b in chips["band"].values] == list(BANDS)
    offsets = np.arange(SIZE) - HALF
    for k, mmsi in enumerate(chips["mmsi"].values):
        r, c, _, _ = ships[int(mmsi) - 224_000_000]
        # the ship's own pixel, in every band, at the centre
        want = np.arange(len(BANDS)) * H * W + r * W + c
        np.testing.assert_array_equal(refl[k, :, HALF, HALF], want.astype(np.float32))
        assert scl[k, HALF, HALF] == SCL_WATER
        # every chip pixel: the stack pixel at the same offset, NaN / SCL 0 off the tile
        rr, cc = np.meshgrid(r + offsets, c + offsets, indexing="ij")
        inside = (rr >= 0) & (rr < H) & (cc >= 0) & (cc < W)
        expect = np.where(inside[None], (np.arange(len(BANDS))[:, None, None] * H * W +
                                         rr * W + cc).astype(np.float32), np.nan)
        np.testing.assert_array_equal(refl[k], expect)
        np.testing.assert_array_equal(scl[k], np.where(inside, SCL_WATER, 0))
        assert chips["valid_frac"].values[k] == np.float32(inside.mean())
        assert not chips["read_error"].values[k]


@settings(max_examples=40, deadline=None, database=None)
@given(epsg=st.sampled_from(sorted(GRIDS)), ships=st.lists(SHIP, min_size=1, max_size=6),
       chunks=CHUNKS)
@example(epsg=32630, ships=[(0, 0, 0.01, 0.01), (H - 1, W - 1, 9.99, 9.99),
                            (0, W - 1, 0.01, 9.99), (H - 1, 0, 9.99, 0.01)], chunks=None)
@example(epsg=32733, ships=[(HALF, HALF, 0.5, 0.5), (H - HALF, W - HALF, 9.5, 9.5),
                            (2 * 11, 2 * 17, 0.2, 0.8)], chunks=(2, 16, 16))
def test_a_ship_anywhere_lands_on_the_chip_centre(epsg, ships, chunks):
    check(epsg, ships, chunks)
