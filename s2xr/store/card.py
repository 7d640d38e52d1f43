"""The dataset card: ``dataset.yaml`` (machine-readable) and ``DATASET.md`` next to the data.

``write_dataset_card(root)`` describes the chip cube for people training on it: band order
and wavelengths, GSD, chip size, the reflectance definition, per-band statistics over the
whole cube (one streaming Dask pass), class counts by ship type, split sizes and the split
leakage table. Both files are written to a temp name and renamed.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr

from s2xr.store.cube import CUBE_NAME, open_chips
from s2xr.store.index import read_index
from s2xr.store.labels import SHIP_CLASSES, read_labels, ship_class
from s2xr.store.layout import DatasetLayout, atomic_write_text
from s2xr.store.objects import cube_at, has_zarr

log = logging.getLogger(__name__)

# Earth Search v1 asset key → (band, centre wavelength µm, FWHM µm, native GSD m), as in the
# items' eo:bands and raster:bands (ESA Sentinel-2 MSI).
S2_BANDS: dict[str, tuple[str, float, float, int]] = {
    "coastal": ("B01", 0.443, 0.027, 60), "blue": ("B02", 0.490, 0.098, 10),
    "green": ("B03", 0.560, 0.045, 10), "red": ("B04", 0.665, 0.038, 10),
    "rededge1": ("B05", 0.704, 0.019, 20), "rededge2": ("B06", 0.740, 0.018, 20),
    "rededge3": ("B07", 0.783, 0.028, 20), "nir": ("B08", 0.842, 0.145, 10),
    "nir08": ("B8A", 0.865, 0.033, 20), "nir09": ("B09", 0.945, 0.026, 60),
    "swir16": ("B11", 1.610, 0.143, 20), "swir22": ("B12", 2.190, 0.242, 20),
}
REFLECTANCE_DEFINITION = (
    "Sentinel-2 L2A bottom-of-atmosphere surface reflectance (unitless, float32) = DN × "
    "0.0001 − 0.1 from processing baseline 04.00 on (and for items with the BOA offset "
    "applied), DN × 0.0001 before; the scale/offset of every item are in each chip's JSON. "
    "NaN = nodata. Not clipped: values below 0 occur over dark water.")
SCL_CLASSES = {0: "nodata", 1: "saturated/defective", 2: "dark/topographic shadow",
               3: "cloud shadow", 4: "vegetation", 5: "not vegetated", 6: "water",
               7: "unclassified", 8: "cloud medium probability",
               9: "cloud high probability", 10: "thin cirrus", 11: "snow/ice"}


def band_statistics(ds: xr.Dataset, var: str = "reflectance") -> pd.DataFrame:
    """Per-band mean, std (population), min, max and valid pixel count of ``ds[var]``
    (chip, band, y, x), NaN-aware, in float64. Computes: ONE streaming pass over the cube —
    all reductions share the chunk reads and run in one ``dask.compute`` (per-chunk moments
    combined pairwise, numerically stable). Index: band."""
    arr = ds[var].data
    if not isinstance(arr, da.Array):
        arr = da.from_array(np.asarray(arr))
    x = arr.astype(np.float64)
    axes = (0, 2, 3)
    mean, var_, lo, hi, n = dask.compute(
        da.nanmean(x, axis=axes), da.nanvar(x, axis=axes), da.nanmin(x, axis=axes),
        da.nanmax(x, axis=axes), da.isfinite(x).sum(axis=axes))
    return pd.DataFrame({"mean": mean, "std": np.sqrt(var_), "min": lo, "max": hi,
                         "valid_pixels": n.astype("int64")},
                        index=pd.Index([str(b) for b in ds["band"].values], name="band"))


def _band_table(ds: xr.Dataset, stats: pd.DataFrame) -> list[dict[str, Any]]:
    out = []
    resampling = str(ds.attrs.get("resampling_20m", "bilinear"))
    for k, b in enumerate(stats.index):
        s2, wl, fwhm, gsd = S2_BANDS.get(b, ("?", float("nan"), float("nan"), 0))
        st = stats.loc[b]
        out.append({"index": k, "name": b, "s2_band": s2, "center_wavelength_um": wl,
                    "fwhm_um": fwhm, "native_gsd_m": gsd,
                    "resampling": "none" if gsd <= float(ds.attrs.get("resolution_m", 10))
                    else resampling,
                    "mean": float(st["mean"]), "std": float(st["std"]),
                    "min": float(st["min"]), "max": float(st["max"]),
                    "valid_pixels": int(st["valid_pixels"])})
    return out


def dataset_card(root: str | Path, data_root: str | Path | None = None) -> dict[str, Any]:
    """The card as a dict (what ``dataset.yaml`` holds). Computes the band statistics
    (:func:`band_statistics`); reads the index and label table. ``data_root``: where the
    cube is when not under ``root`` (an object store dataset's URL)."""
    from s2xr.splits import leakage_report

    root = Path(root)
    data = root if data_root is None else data_root
    if not has_zarr(cube_at(data)):
        raise FileNotFoundError(f"no chip cube at {cube_at(data)}; run `s2xr chip` first")
    ds = open_chips(data)
    stats = band_statistics(ds)
    idx = read_index(root)
    passed = idx.loc[idx["qa_pass"].astype(bool)] if len(idx) else idx
    labels = read_labels(root)
    centre = passed["ship_type"].map(ship_class) if len(passed) else pd.Series(dtype=str)

    def by_class(s: pd.Series) -> dict[str, int]:
        c = s.value_counts()
        return {k: int(c.get(k, 0)) for k in SHIP_CLASSES if c.get(k, 0)}

    split_chips = passed.groupby("split").size() if len(passed) else pd.Series(dtype=int)
    split_ships = passed.groupby("split")["mmsi"].nunique() if len(passed) else split_chips
    order = [s for s in ("train", "val", "test") if s in split_chips.index]
    order += sorted(set(split_chips.index) - set(order))
    split_chips, split_ships = split_chips.reindex(order), split_ships.reindex(order)
    leak = leakage_report(passed) if len(passed) else pd.DataFrame()
    boxes = labels.loc[labels["kind"] == "box"] if len(labels) else labels
    return {
        "name": "s2xr Sentinel-2 ship chips",
        "created": pd.Timestamp.now(tz="UTC").isoformat(),
        "root": str(root.resolve()),
        "synthetic": bool(len(passed) and (passed["provider"] == "synthetic").all()),
        "cube": {"path": CUBE_NAME, "n_chips": int(ds.sizes["chip"]),
                 "dims": {k: int(v) for k, v in ds.sizes.items()},
                 "variables": {str(k): {"dims": list(v.dims), "dtype": str(v.dtype)}
                               for k, v in ds.data_vars.items() if v.ndim > 1},
                 "open_with": "s2xr.store.open_chips(root)"},
        "chip": {"size_px": int(ds.sizes["x"]),
                 "gsd_m": float(ds.attrs.get("resolution_m", 10.0)),
                 "size_m": float(ds.sizes["x"] * ds.attrs.get("resolution_m", 10.0)),
                 "crs": "the item's UTM zone (per-chip epsg and transform coords)",
                 "centre": "the ship's AIS position at sensing time is pixel (size/2, size/2)"},
        "reflectance": {"definition": REFLECTANCE_DEFINITION, "dtype": "float32",
                        "nodata": "NaN"},
        "bands": _band_table(ds, stats),
        "scl_classes": SCL_CLASSES,
        "labels": {"n_labels": len(labels), "n_boxes": len(boxes),
                   "n_points": int(len(labels) - len(boxes)),
                   "ship_mask": "uint8 instance mask: 0 background, k = the chip's label "
                                "with instance k",
                   "instances_by_class": by_class(labels["ship_class"]) if len(labels) else {},
                   "files": [str(DatasetLayout(Path()).labels),
                             f"{DatasetLayout.CHIPS}/**/{{chip_id}}.json (labels)"]},
        "classes": {"scheme": "AIS ship type (ITU-R M.1371) grouped into "
                              + ", ".join(SHIP_CLASSES),
                    "chips_by_class": by_class(centre)},
        "splits": {"chips": {str(k): int(v) for k, v in split_chips.items()},
                   "vessels": {str(k): int(v) for k, v in split_ships.items()},
                   "leakage": {str(k): {c: (float(v) if isinstance(v, float) else
                                            v if isinstance(v, str) else int(v))
                                        for c, v in r.items()}
                               for k, r in leak.to_dict("index").items()}},
    }


def _markdown(card: dict[str, Any]) -> str:
    c = card
    lines = [f"# {c['name']}", "",
             f"{c['cube']['n_chips']} chips of {c['chip']['size_px']}×{c['chip']['size_px']} "
             f"px at {c['chip']['gsd_m']:g} m ({c['chip']['size_m']:g} m square), "
             f"written {c['created']}." +
             (" **Synthetic data** (the embedded demo world)." if c["synthetic"] else ""), "",
             "Open lazily with `s2xr.store.open_chips(root)` (see `docs/training.md`).", "",
             "## Bands", "", c["reflectance"]["definition"], "",
             "| # | band | S2 | centre µm | FWHM µm | native GSD m | mean | std | min | max |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for b in c["bands"]:
        lines.append(f"| {b['index']} | {b['name']} | {b['s2_band']} | "
                     f"{b['center_wavelength_um']:.3f} | {b['fwhm_um']:.3f} | "
                     f"{b['native_gsd_m']} | {b['mean']:.5f} | {b['std']:.5f} | "
                     f"{b['min']:.4f} | {b['max']:.4f} |")
    lines += ["", "Statistics over every valid pixel of the cube (NaN excluded).", "",
              "## Variables", ""]
    for name, v in c["cube"]["variables"].items():
        lines.append(f"* `{name}({', '.join(v['dims'])})` {v['dtype']}")
    lb = c["labels"]
    lines += ["", "## Labels", "",
              f"{lb['n_labels']} ship labels ({lb['n_boxes']} oriented boxes, "
              f"{lb['n_points']} points without AIS dimensions or heading); "
              f"`ship_mask`: {lb['ship_mask']}.", "",
              "| class | chips (centre ship) | instances (all labels) |", "|---|---|---|"]
    names = list(dict.fromkeys([*c["classes"]["chips_by_class"],
                                *lb["instances_by_class"]]))
    for n in names:
        lines.append(f"| {n} | {c['classes']['chips_by_class'].get(n, 0)} | "
                     f"{lb['instances_by_class'].get(n, 0)} |")
    lines += ["", "## Splits", "", "| split | chips | vessels |", "|---|---|---|"]
    for s, n in c["splits"]["chips"].items():
        lines.append(f"| {s} | {n} | {c['splits']['vessels'].get(s, 0)} |")
    lines += ["", "Leakage (keys with chips in more than one split):", "",
              "| kind | keys | shared | chips sharing |", "|---|---|---|---|"]
    for k, r in c["splits"]["leakage"].items():
        lines.append(f"| {k} | {r['n_keys']} | {r['n_shared']} | {r['n_chips_shared']} |")
    return "\n".join(lines) + "\n"


def write_dataset_card(root: str | Path, data_root: str | Path | None = None
                       ) -> tuple[Path, Path]:
    """Write ``{root}/dataset.yaml`` and ``{root}/DATASET.md``; returns both paths. Computes
    the band statistics over the whole cube (one Dask pass; at ``data_root`` when given)."""
    import yaml

    root = Path(root)
    card = dataset_card(root, data_root)
    y_path, md_path = DatasetLayout(root).card_yaml, DatasetLayout(root).card_md
    atomic_write_text(y_path, yaml.safe_dump(card, sort_keys=False, allow_unicode=True))
    atomic_write_text(md_path, _markdown(card))
    log.info("dataset card: %s, %s", y_path, md_path)
    return y_path, md_path
