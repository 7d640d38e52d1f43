"""Gate chips by SCL class fractions and the NDWI water fraction near the centre.

Adds (lazily, per chip):

* ``qa_cloud_frac``, ``qa_land_frac``, ``qa_water_frac`` — SCL fractions in the centre
  window (``centre_px``²) of valid SCL pixels: cloud = 8/9/10 (+ 3 shadow if configured),
  land = 4/5, water = 6; these are what the gate tests;
* ``qa_chip_cloud_frac``, ``qa_chip_land_frac``, ``qa_chip_water_frac`` — the same over
  the whole chip;
* ``qa_ndwi_water_frac`` — fraction of valid centre pixels with
  NDWI = (green − nir) / (green + nir) > ``ndwi_threshold``;
* ``qa_pass`` (bool) and ``qa_reason`` (str; empty when passed).

A gate error (missing band, no SCL) raises; it never passes a chip.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from s2xr.config import GateConfig
from s2xr.errors import SceneError

CLOUD = (8, 9, 10)
SHADOW = (3,)
LAND = (4, 5)
WATER = (6,)


def _frac(scl: xr.DataArray, classes: tuple[int, ...]) -> xr.DataArray:
    valid = (scl > 0).sum(("y", "x"))
    hit = scl.isin(list(classes)).sum(("y", "x"))
    return (hit / valid.where(valid > 0)).fillna(0.0).astype(np.float32)


def _reasons(cloud: np.ndarray, land: np.ndarray, ndwi: np.ndarray, valid: np.ndarray,
             err: np.ndarray, cfg: GateConfig) -> np.ndarray:
    out = []
    for c, la, w, v, e in zip(cloud, land, ndwi, valid, err, strict=True):
        if e:
            out.append("read_error: rasters could not be read (see log)")
            continue
        r = []
        if v < cfg.min_valid:
            r.append(f"valid {v:.2f}<{cfg.min_valid:g}")
        if c > cfg.max_cloud:
            r.append(f"cloud {c:.2f}>{cfg.max_cloud:g}")
        if la > cfg.max_land:
            r.append(f"land {la:.2f}>{cfg.max_land:g}")
        if w < cfg.min_water:
            r.append(f"ndwi_water {w:.2f}<{cfg.min_water:g}")
        out.append("; ".join(r))
    return np.array(out, dtype=object)


def gate_chips(chips: xr.Dataset, cfg: GateConfig | None = None) -> xr.Dataset:
    """``chips`` (from :func:`~s2xr.chips.cut_chips`) + the QA variables above. Lazy except
    ``qa_reason``, which is filled by :func:`explain_gate` after computing."""
    cfg = cfg or GateConfig()
    for need in ("green", "nir"):
        if need not in chips.band.values:
            raise SceneError(f"the gate needs band '{need}' for NDWI; add it to chip.bands")
    if "scl" not in chips:
        raise SceneError("the gate needs the 'scl' variable")
    size_y, size_x = chips.sizes["y"], chips.sizes["x"]
    c = min(cfg.centre_px, size_y, size_x)
    y0, x0 = (size_y - c) // 2, (size_x - c) // 2
    centre = {"y": slice(y0, y0 + c), "x": slice(x0, x0 + c)}
    scl = chips["scl"]
    scl_c = scl.isel(centre)
    cloud_classes = CLOUD + (SHADOW if cfg.cloud_includes_shadow else ())
    refl_c = chips["reflectance"].isel(centre)
    g, n = refl_c.sel(band="green"), refl_c.sel(band="nir")
    ndwi = (g - n) / (g + n)
    ndwi_valid = ndwi.notnull().sum(("y", "x"))
    ndwi_water = ((ndwi > cfg.ndwi_threshold).sum(("y", "x")) /
                  ndwi_valid.where(ndwi_valid > 0)).fillna(0.0).astype(np.float32)
    out = chips.assign(
        qa_cloud_frac=_frac(scl_c, cloud_classes), qa_land_frac=_frac(scl_c, LAND),
        qa_water_frac=_frac(scl_c, WATER), qa_chip_cloud_frac=_frac(scl, cloud_classes),
        qa_chip_land_frac=_frac(scl, LAND), qa_chip_water_frac=_frac(scl, WATER),
        qa_ndwi_water_frac=ndwi_water)
    ok = ~out.read_error if "read_error" in out else True
    if cfg.enabled:
        passed = ok & ((out.qa_cloud_frac <= cfg.max_cloud) & (out.qa_land_frac <= cfg.max_land) &
                  (out.qa_ndwi_water_frac >= cfg.min_water) &
                  (out.valid_frac >= cfg.min_valid))
    else:
        passed = xr.ones_like(out.valid_frac, dtype=bool) & ok
    out["qa_pass"] = passed
    out.attrs["gate"] = cfg.model_dump_json()
    return out


def explain_gate(gated: xr.Dataset, cfg: GateConfig | None = None) -> xr.Dataset:
    """Add ``qa_reason(chip)`` (why a chip failed; '' if it passed) to a computed dataset."""
    cfg = cfg or GateConfig()
    err = gated.read_error.values if "read_error" in gated else np.zeros(gated.sizes["chip"],
                                                                          bool)
    reasons = _reasons(gated.qa_cloud_frac.values, gated.qa_land_frac.values,
                       gated.qa_ndwi_water_frac.values, gated.valid_frac.values,
                       err, cfg)
    if not cfg.enabled:
        reasons = np.where(err, reasons, "")
    return gated.assign(qa_reason=("chip", reasons))
