"""The label table ``{root}/indexes/labels.parquet``: one row per (chip, ship) in the cube.

Rows are produced by :func:`s2xr.labels.label_chips` (columns :data:`LABEL_COLUMNS`, ship
classes :data:`SHIP_CLASSES` from :func:`ship_class`); the writer merges those of the chips
that passed the gate, by chip_id, to a temp file renamed into place — always before the index
that names the chips. Readers keep only chips the index lists as passed, so a prune or a
crash never surfaces stale labels.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from s2xr.store.layout import DatasetLayout, atomic_write

log = logging.getLogger(__name__)

# Ship classes for COCO/YOLO categories and the dataset card (AIS type codes, ITU-R M.1371).
SHIP_CLASSES = ("cargo", "tanker", "passenger", "fishing", "tug", "pleasure", "high_speed",
                "service", "military", "other", "unknown")

LABEL_COLUMNS = [
    "chip_id", "instance", "mmsi", "is_target", "kind", "label_flag", "epsg", "x", "y",
    "lon", "lat", "col", "row", "heading_deg", "heading_source", "grid_heading_deg",
    "length_m", "beam_m", "to_bow", "to_stern", "to_port", "to_starboard", "cx", "cy",
    "cx_px", "cy_px", "length_px", "beam_px", "corners_px", "polygon_wkt", "truncated",
    "ship_type", "ship_class", "sog", "position_method", "dt_seconds", "uncertainty_m",
]

def ship_class(ship_type: object) -> str:
    """AIS ship type code → one of :data:`SHIP_CLASSES` (``unknown`` when missing)."""
    if ship_type is None or pd.isna(ship_type):
        return "unknown"
    t = int(ship_type)  # type: ignore[call-overload]
    if 70 <= t <= 79:
        return "cargo"
    if 80 <= t <= 89:
        return "tanker"
    if 60 <= t <= 69:
        return "passenger"
    if t == 30:
        return "fishing"
    if t in (31, 32, 52):
        return "tug"
    if t in (36, 37):
        return "pleasure"
    if 40 <= t <= 49:
        return "high_speed"
    if t in (50, 51, 53, 54, 55, 58):
        return "service"
    if t == 35:
        return "military"
    return "other"


# per-chip JSON: these label columns (pixel/CRS geometry, identity, provenance)
JSON_FIELDS = ("instance", "mmsi", "is_target", "kind", "label_flag", "ship_class",
               "ship_type", "length_m", "beam_m", "to_bow", "to_stern", "to_port",
               "to_starboard", "heading_deg", "heading_source", "grid_heading_deg", "sog",
               "x", "y", "lon", "lat", "col", "row", "cx", "cy", "cx_px", "cy_px",
               "length_px", "beam_px", "truncated", "position_method", "dt_seconds",
               "uncertainty_m")


def labels_path(root: Path) -> Path:
    return DatasetLayout(Path(root)).labels


def read_labels(root: str | Path, *, indexed_only: bool = True) -> pd.DataFrame:
    """The label table (empty DataFrame if none). ``indexed_only``: only rows of chips the
    index lists as passed (i.e. chips in the cube). Reads the parquet files; no Dask."""
    from s2xr.store.index import read_index

    p = labels_path(Path(root))
    if not p.exists():
        return pd.DataFrame(columns=LABEL_COLUMNS)
    df = pd.read_parquet(p)
    if indexed_only:
        idx = read_index(Path(root))
        ok = set(idx.loc[idx["qa_pass"].astype(bool), "chip_id"]) if len(idx) else set()
        df = df.loc[df["chip_id"].isin(ok)].reset_index(drop=True)
    return df


def merge_labels(root: Path, rows: pd.DataFrame) -> pd.DataFrame:
    """Replace the labels of ``rows``' chips with ``rows`` and write atomically. Returns the
    full table."""
    p = labels_path(Path(root))
    old = pd.read_parquet(p) if p.exists() else None
    if old is not None and len(old):
        old = old.loc[~old["chip_id"].isin(set(rows["chip_id"]))]
        full = pd.concat([old, rows], ignore_index=True) if len(rows) else old
    else:
        full = rows
    full = full.sort_values(["chip_id", "instance"], kind="stable").reset_index(drop=True)
    full["ship_type"] = pd.to_numeric(full["ship_type"], errors="coerce").astype("Int64")
    atomic_write(p, lambda t: full.to_parquet(t, index=False))
    log.info("labels %s: %d row(s) (+%d)", p, len(full), len(rows))
    return full


def _plain(v: Any) -> Any:
    if v is None or v is pd.NA:
        return None
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def label_records(labels: pd.DataFrame) -> dict[str, list[dict[str, Any]]]:
    """chip_id → JSON-ready label dicts (``corners_px`` as [[col, row] × 4], ``polygon`` as
    GeoJSON-style coordinates in the chip CRS, NaN → null). Pure."""
    import shapely

    out: dict[str, list[dict[str, Any]]] = {}
    if labels.empty:
        return out
    geoms = shapely.from_wkt(labels["polygon_wkt"].to_numpy())
    for k, row in enumerate(labels.to_dict("records")):
        rec = {f: _plain(row.get(f)) for f in JSON_FIELDS}
        c = row.get("corners_px")
        rec["corners_px"] = (None if c is None or (not hasattr(c, "__len__")) else
                             [[float(c[i]), float(c[i + 1])] for i in range(0, len(c), 2)])
        rec["polygon"] = shapely.geometry.mapping(geoms[k])
        rec["polygon_crs"] = f"EPSG:{int(row['epsg'])}"
        out.setdefault(str(row["chip_id"]), []).append(rec)
    return out
