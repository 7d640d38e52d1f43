"""gate_chips / explain_gate: every threshold flips qa_pass at its boundary and is named.

The chips are small synthetic Datasets with the variables cut_chips makes (reflectance,
scl, read_error, valid_frac); one test runs the gate on chips cut from an in-memory stack.
Chips are 20 × 20 px and the gate's centre window 10 × 10 px (rows/cols 5..14), so a
centre fraction is k/100 and a whole-chip fraction k/400.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from pyproj import Transformer

from s2xr.chips import cut_chips, plan_chips
from s2xr.config import ChipSpec, GateConfig
from s2xr.errors import SceneError
from s2xr.gate import explain_gate, gate_chips

BANDS = ("blue", "green", "red", "nir")
SIZE, CENTRE = 20, 10
LO = (SIZE - CENTRE) // 2  # first centre row/col
WATER = (0.03, 0.08, 0.02, 0.02)  # blue, green, red, nir: NDWI 0.6
LAND = (0.05, 0.04, 0.06, 0.30)  # NDWI < 0
CENTRE_PX = [(r, c) for r in range(LO, LO + CENTRE) for c in range(LO, LO + CENTRE)]
OUTER_PX = [(r, c) for r in range(SIZE) for c in range(SIZE) if (r, c) not in set(CENTRE_PX)]


def chip_arrays(n: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Open-water chips: reflectance (n, band, y, x) float32 and SCL 6 everywhere."""
    refl = np.empty((n, len(BANDS), SIZE, SIZE), np.float32)
    refl[:] = np.array(WATER, np.float32)[None, :, None, None]
    return refl, np.full((n, SIZE, SIZE), 6, np.uint8)


def chips_dataset(refl: np.ndarray, scl: np.ndarray, read_error=None) -> xr.Dataset:
    """The variables cut_chips makes (valid_frac the same way), Dask-backed like its output."""
    n = refl.shape[0]
    ds = xr.Dataset({"reflectance": (("chip", "band", "y", "x"), refl),
                     "scl": (("chip", "y", "x"), scl)},
                    coords={"band": ("band", np.array(BANDS, dtype=object)),
                            "chip_id": ("chip", np.array([f"{k:016x}" for k in range(n)],
                                                         dtype=object))})
    ds["read_error"] = ("chip", np.zeros(n, bool) if read_error is None
                        else np.asarray(read_error, bool))
    ds["valid_frac"] = ds["reflectance"].isel(band=0).notnull().mean(("y", "x")).astype(
        np.float32)
    return ds.chunk({"chip": 1})


def gate(ds: xr.Dataset, **cfg) -> xr.Dataset:
    c = GateConfig(centre_px=cfg.pop("centre_px", CENTRE), **cfg)
    out = gate_chips(ds, c)
    assert out["qa_pass"].chunks is not None  # lazy until computed
    return explain_gate(out.compute(scheduler="synchronous"), c)


def set_pixels(a: np.ndarray, pixels: list[tuple[int, int]], value) -> None:
    """Set ``a[..., r, c]`` (any leading dims) for the given pixels."""
    rows, cols = np.array(pixels, dtype=int).reshape(-1, 2).T
    if a.ndim == 3:
        a[:, rows, cols] = value
    else:
        a[:, :, rows, cols] = np.asarray(value, a.dtype).reshape(1, -1, 1)


def verdicts(g: xr.Dataset) -> list[tuple[bool, str]]:
    return list(zip(g["qa_pass"].values.tolist(), g["qa_reason"].values.tolist(), strict=True))


# --------------------------------------------------------------------------- thresholds
@pytest.mark.parametrize("cls", [8, 9, 10])
def test_max_cloud(cls):
    refl, scl = chip_arrays(2)
    set_pixels(scl[:1], CENTRE_PX[:5], cls)  # 0.05: at the threshold, passes (≤)
    set_pixels(scl[1:], CENTRE_PX[:6], cls)  # 0.06
    g = gate(chips_dataset(refl, scl), max_cloud=0.05)
    np.testing.assert_allclose(g["qa_cloud_frac"], [0.05, 0.06], rtol=1e-6)
    assert verdicts(g) == [(True, ""), (False, "cloud 0.06>0.05")]


def test_max_cloud_other_value():
    refl, scl = chip_arrays(2)
    set_pixels(scl[:1], CENTRE_PX[:30], 9)
    set_pixels(scl[1:], CENTRE_PX[:31], 9)
    assert verdicts(gate(chips_dataset(refl, scl), max_cloud=0.3)) == [
        (True, ""), (False, "cloud 0.31>0.3")]
    assert [p for p, _ in verdicts(gate(chips_dataset(refl, scl), max_cloud=0.31))] == [
        True, True]


@pytest.mark.parametrize("cls", [4, 5])
def test_max_land(cls):
    refl, scl = chip_arrays(2)
    set_pixels(scl[:1], CENTRE_PX[:20], cls)
    set_pixels(scl[1:], CENTRE_PX[:21], cls)
    g = gate(chips_dataset(refl, scl), max_land=0.2)
    np.testing.assert_allclose(g["qa_land_frac"], [0.2, 0.21], rtol=1e-6)
    np.testing.assert_allclose(g["qa_water_frac"], [0.8, 0.79], rtol=1e-6)
    assert verdicts(g) == [(True, ""), (False, "land 0.21>0.2")]


def test_min_water_counts_ndwi_water_pixels():
    refl, scl = chip_arrays(2)
    set_pixels(refl[:1], CENTRE_PX[:50], LAND)  # NDWI water 0.5: at the threshold
    set_pixels(refl[1:], CENTRE_PX[:51], LAND)  # 0.49
    g = gate(chips_dataset(refl, scl), min_water=0.5)
    np.testing.assert_allclose(g["qa_ndwi_water_frac"], [0.5, 0.49], rtol=1e-6)
    # SCL still says water everywhere: the rule is NDWI's, not SCL's
    np.testing.assert_allclose(g["qa_water_frac"], [1.0, 1.0])
    assert verdicts(g) == [(True, ""), (False, "ndwi_water 0.49<0.5")]


def test_ndwi_threshold():
    refl, scl = chip_arrays(1)
    refl[:, 1], refl[:, 3] = 0.3, 0.1  # NDWI = 0.2 / 0.4 = 0.5 everywhere
    ds = chips_dataset(refl, scl)
    below, above = gate(ds, ndwi_threshold=0.499), gate(ds, ndwi_threshold=0.501)
    assert float(below["qa_ndwi_water_frac"][0]) == 1.0
    assert float(above["qa_ndwi_water_frac"][0]) == 0.0
    assert verdicts(below) == [(True, "")]
    assert verdicts(above) == [(False, "ndwi_water 0.00<0.5")]


def test_min_valid():
    refl, scl = chip_arrays(2)
    # nodata outside the centre: 160 px of 400 → valid 0.6; 161 px → 0.5975
    for k, n_nan in enumerate((160, 161)):
        set_pixels(refl[k:k + 1], OUTER_PX[:n_nan], (np.nan,) * len(BANDS))
        set_pixels(scl[k:k + 1], OUTER_PX[:n_nan], 0)
    g = gate(chips_dataset(refl, scl), min_valid=0.6)
    np.testing.assert_allclose(g["valid_frac"], [0.6, 0.5975], rtol=1e-6)
    assert verdicts(g) == [(True, ""), (False, "valid 0.60<0.6")]


def test_fractions_are_of_valid_scl_pixels():
    refl, scl = chip_arrays(2)
    set_pixels(scl, CENTRE_PX[:50], 0)  # half the centre has no SCL
    set_pixels(scl[:1], CENTRE_PX[50:52], 9)  # 2 of 50 valid = 0.04
    set_pixels(scl[1:], CENTRE_PX[50:53], 9)  # 3 of 50 = 0.06
    g = gate(chips_dataset(refl, scl), max_cloud=0.05)
    np.testing.assert_allclose(g["qa_cloud_frac"], [0.04, 0.06], rtol=1e-6)
    assert verdicts(g) == [(True, ""), (False, "cloud 0.06>0.05")]


def test_centre_px_sets_the_window_the_gate_tests():
    refl, scl = chip_arrays(1)
    set_pixels(scl, OUTER_PX, 9)  # clouds all around a clear 10 × 10 centre
    ds = chips_dataset(refl, scl)
    small, whole = gate(ds, centre_px=CENTRE), gate(ds, centre_px=SIZE)
    assert float(small["qa_cloud_frac"][0]) == 0.0
    np.testing.assert_allclose(small["qa_chip_cloud_frac"], [0.75])
    assert verdicts(small) == [(True, "")]
    np.testing.assert_allclose(whole["qa_cloud_frac"], [0.75])
    assert verdicts(whole) == [(False, "cloud 0.75>0.05")]
    # a centre larger than the chip is the chip
    assert verdicts(gate(ds, centre_px=4 * SIZE)) == verdicts(whole)


def test_cloud_includes_shadow_changes_the_verdict_of_a_shadow_only_chip():
    refl, scl = chip_arrays(1)
    set_pixels(scl, CENTRE_PX[:20], 3)  # cloud shadow, no cloud
    ds = chips_dataset(refl, scl)
    without, with_shadow = gate(ds), gate(ds, cloud_includes_shadow=True)
    assert float(without["qa_cloud_frac"][0]) == 0.0
    np.testing.assert_allclose(with_shadow["qa_cloud_frac"], [0.2], rtol=1e-6)
    assert verdicts(without) == [(True, "")]
    assert verdicts(with_shadow) == [(False, "cloud 0.20>0.05")]


def test_every_failing_rule_is_named():
    refl, scl = chip_arrays(1)
    set_pixels(scl, CENTRE_PX[:10], 9)
    set_pixels(scl, CENTRE_PX[10:40], 5)
    set_pixels(refl, CENTRE_PX[:60], LAND)
    set_pixels(refl, OUTER_PX[:250], (np.nan,) * len(BANDS))
    set_pixels(scl, OUTER_PX[:250], 0)
    g = gate(chips_dataset(refl, scl))
    assert verdicts(g) == [(False, "valid 0.38<0.5; cloud 0.10>0.05; land 0.30>0.2; "
                                   "ndwi_water 0.40<0.5")]


# ----------------------------------------------------------------------- switches, errors
def _bad_and_good() -> xr.Dataset:
    refl, scl = chip_arrays(3)
    set_pixels(scl[1:2], CENTRE_PX, 9)  # all cloud
    set_pixels(refl[2:3], CENTRE_PX, LAND)
    set_pixels(scl[2:3], CENTRE_PX, 4)  # all land
    return chips_dataset(refl, scl)


def test_enabled_false_passes_everything():
    ds = _bad_and_good()
    on = gate(ds)
    assert [p for p, _ in verdicts(on)] == [True, False, False]
    off = gate(ds, enabled=False)
    assert verdicts(off) == [(True, ""), (True, ""), (True, "")]
    # the QA fractions are still measured
    np.testing.assert_array_equal(off["qa_cloud_frac"], on["qa_cloud_frac"])
    np.testing.assert_allclose(off["qa_land_frac"], [0.0, 0.0, 1.0])


def test_read_error_chips_fail_with_a_read_error_reason():
    refl, scl = chip_arrays(3)
    refl[1] = np.nan  # what cut_chips makes of an unreadable chip
    scl[1] = 0
    err = [False, True, True]  # chip 2: flagged although its pixels look fine
    ds = chips_dataset(refl, scl, read_error=err)
    for g in (gate(ds), gate(ds, enabled=False)):
        ok, reasons = g["qa_pass"].values, g["qa_reason"].values
        assert ok.tolist() == [True, False, False]
        assert reasons[0] == ""
        assert all(r.startswith("read_error") for r in reasons[1:])
        assert "valid" not in reasons[1] and "ndwi" not in reasons[1]


def test_gate_needs_green_nir_and_scl():
    refl, scl = chip_arrays(1)
    ds = chips_dataset(refl, scl)
    with pytest.raises(SceneError, match="green"):
        gate_chips(ds.sel(band=["blue", "red", "nir"]))
    with pytest.raises(SceneError, match="nir"):
        gate_chips(ds.sel(band=["blue", "green", "red"]))
    with pytest.raises(SceneError, match="scl"):
        gate_chips(ds.drop_vars("scl"))


def test_gate_records_its_config():
    cfg = GateConfig(max_cloud=0.1, centre_px=CENTRE)
    g = gate_chips(_bad_and_good(), cfg)
    assert GateConfig.model_validate_json(g.attrs["gate"]) == cfg


# --------------------------------------------------------------------- on cut_chips output
def test_gate_on_chips_cut_from_an_in_memory_stack():
    """Three ships on a 100 × 100 px stack: open water, under a cloud, on land."""
    epsg, x0, y0, n = 32630, 399960.0, 4000020.0, 100
    bands = [*BANDS, "scl"]
    data = np.empty((1, len(bands), n, n), np.float32)
    data[0, :4] = np.array(WATER, np.float32)[:, None, None]
    data[0, 4] = 6
    data[0, 4, 40:80, 0:40] = 9  # cloud west of centre row band
    data[0, :4, 0:40, 55:100] = np.array(LAND, np.float32)[:, None, None]
    data[0, 4, 0:40, 55:100] = 5
    when = pd.Timestamp("2026-09-30T11:06:21Z")
    stack = xr.DataArray(
        data, dims=("time", "band", "y", "x"),
        coords={"time": [when.tz_localize(None).to_datetime64()], "id": ("time", ["A"]),
                "band": bands, "x": x0 + 5 + 10 * np.arange(n), "y": y0 - 5 - 10 * np.arange(n)})
    item = {"item_id": "A", "collection": "sentinel-2-l2a", "datetime": when,
            "tile_id": "30STE", "epsg": epsg, "platform": "sentinel-2a", "satellite": "S2A",
            "datatake": "DT1", "processing_baseline": "05.11", "sequence": 0,
            "cloud_cover": 1.0, "x0": x0, "y0": y0, "res": 10.0, "height": n, "width": n,
            "hrefs": {}}
    to_ll = Transformer.from_crs(epsg, 4326, always_xy=True)
    ships = {1: (85, 80), 2: (60, 20), 3: (20, 78)}  # (row, col): water, cloud, land
    rows = []
    for mmsi, (r, c) in ships.items():
        lon, lat = to_ll.transform(x0 + 10 * c + 5, y0 - 10 * r - 5)
        rows.append({"mmsi": mmsi, "item_id": "A", "target_key": f"t{mmsi}", "lat": lat,
                     "lon": lon})
    spec = ChipSpec(size=SIZE, bands=BANDS, include_swir=False)
    plan = plan_chips(pd.DataFrame(rows), pd.DataFrame([item]), spec).plan
    g = gate(cut_chips(stack, plan, spec), max_cloud=0.05)
    got = dict(zip(g["mmsi"].values.tolist(), verdicts(g), strict=True))
    assert got[1] == (True, "")
    assert not got[2][0] and got[2][1].startswith("cloud 1.00>0.05")
    assert not got[3][0] and "land 1.00>0.2" in got[3][1] and "ndwi_water 0.00<0.5" in got[3][1]
