"""The GeoParquet chip index and the daily footprint GeoJSON files.

``{root}/indexes/tiles.parquet`` — one row per cut chip (passed or rejected by the gate);
``{root}/indexes/tiles_YYYYMMDD.geojson`` — footprints of that day's chips. Both are written
once per batch, merged with what exists (by chip_id), to a temp file and renamed.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import geopandas as gpd
import pandas as pd

from s2xr.store.layout import DatasetLayout, atomic_write

log = logging.getLogger(__name__)

INDEX_COLUMNS = [
    "chip_id", "path", "mmsi", "lat", "lon", "overpass_time", "scene_id", "scene_datetime",
    "cloud_cover", "split", "bands", "has_swir", "qa_cloud_frac", "qa_water_frac",
    "qa_land_frac", "qa_ndwi_water_frac", "qa_chip_cloud_frac", "valid_frac", "qa_pass",
    "qa_reason", "epsg", "tile_id", "dt_seconds", "ais_time", "position_method",
    "uncertainty_m", "processing_baseline", "collection", "ship_type", "length", "beam",
    "ship_name", "provider", "n_ships", "geometry",
]


def index_path(root: Path) -> Path:
    return DatasetLayout(Path(root)).index


def read_index(root: Path) -> gpd.GeoDataFrame:
    """The chip index (empty GeoDataFrame with INDEX_COLUMNS if none yet)."""
    p = index_path(root)
    if not p.exists():
        return gpd.GeoDataFrame(columns=INDEX_COLUMNS, geometry="geometry", crs="EPSG:4326")
    return gpd.read_parquet(p)


def merge_index(root: Path, rows: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Merge ``rows`` into the index (new rows win on chip_id), write it atomically, then
    rewrite the daily footprint files of the days touched. Returns the full index."""
    old = read_index(root)
    frames = [f for f in (old, rows) if len(f)]
    full = pd.concat(frames, ignore_index=True) if frames else rows
    full = full.drop_duplicates("chip_id", keep="last").sort_values(
        ["scene_datetime", "chip_id"], kind="stable").reset_index(drop=True)
    full = gpd.GeoDataFrame(full, geometry="geometry", crs="EPSG:4326")
    atomic_write(index_path(root), lambda p: full.to_parquet(p, index=False))
    days = sorted({pd.Timestamp(t).strftime("%Y%m%d") for t in rows["scene_datetime"]})
    for day in days:
        write_daily_footprints(root, full, day)
    log.info("index %s: %d chip(s) (+%d)", index_path(root), len(full), len(rows))
    return full


def write_daily_footprints(root: Path, index: gpd.GeoDataFrame, day: str) -> Path:
    """``indexes/tiles_{day}.geojson`` from the index rows of that UTC day."""
    when = pd.to_datetime(index["scene_datetime"], utc=True).dt.strftime("%Y%m%d")
    sub = index.loc[when == day]
    cols = ["chip_id", "mmsi", "scene_id", "scene_datetime", "split", "qa_pass", "path",
            "tile_id"]
    path = DatasetLayout(Path(root)).footprints(day)
    sub = sub[[*cols, "geometry"]]

    def write(tmp: Path) -> None:
        # streamed feature by feature: memory stays flat however large the day grows
        with tmp.open("w", encoding="utf-8") as f:
            f.write('{"type": "FeatureCollection", "features": [')
            for k, row in enumerate(sub.itertuples()):
                props = {c: getattr(row, c) for c in cols}
                props["scene_datetime"] = pd.Timestamp(props["scene_datetime"]).isoformat()
                props["mmsi"] = int(props["mmsi"])
                props["qa_pass"] = bool(props["qa_pass"])
                feat = {"type": "Feature", "geometry": row.geometry.__geo_interface__,
                        "properties": props}
                f.write(("," if k else "") + "\n" + json.dumps(feat, default=str))
            f.write("\n]}\n")

    atomic_write(path, write)
    return path
