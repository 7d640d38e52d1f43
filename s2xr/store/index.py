"""The GeoParquet chip index and the daily footprint GeoJSON files.

``{root}/indexes/tiles.parquet`` — one row per cut chip (passed or rejected by the gate);
``{root}/indexes/tiles_YYYYMMDD.geojson`` — footprints of that day's chips. Both are written
once per batch, merged with what exists (by chip_id), to a temp file and renamed.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import shapely

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
    """:func:`append_index`, then the full index read back (a GeoDataFrame)."""
    append_index(root, rows)
    return read_index(root)


def _table(rows: gpd.GeoDataFrame) -> pa.Table:
    """``rows`` as the Arrow table geopandas writes (WKB geometry, ``geo`` and ``pandas``
    schema metadata)."""
    buf = io.BytesIO()
    rows.to_parquet(buf, index=False)
    buf.seek(0)
    return pq.read_table(buf)


def _union_bbox(meta: dict[bytes, bytes], old: dict[bytes, bytes] | None) -> dict[bytes, bytes]:
    """``meta`` with its GeoParquet geometry bbox widened to cover ``old``'s."""
    geo = json.loads(meta[b"geo"])
    col = geo["columns"][geo["primary_column"]]
    prev = json.loads(old[b"geo"])["columns"].get(geo["primary_column"], {}) \
        if old and b"geo" in old else {}
    if "bbox" in col and "bbox" in prev:
        a, b = col["bbox"], prev["bbox"]
        col["bbox"] = [min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])]
    return {**meta, b"geo": json.dumps(geo).encode()}


def append_index(root: Path, rows: gpd.GeoDataFrame) -> int:
    """Merge ``rows`` into the index (new rows win on chip_id; sorted by scene_datetime,
    chip_id), write it atomically, then rewrite the daily footprint files of the days the
    rows touch. The merge runs in Arrow with the geometry as WKB: the full index is never
    decoded into Python objects (its memory stays a few bytes per row, however large the
    dataset grows). Returns the index's row count."""
    new = _table(gpd.GeoDataFrame(rows, geometry="geometry", crs="EPSG:4326"))
    path = index_path(root)
    old = pq.read_table(path) if path.exists() else None
    table = new if old is None else pa.concat_tables(
        [old.replace_schema_metadata(None), new.replace_schema_metadata(None)],
        promote_options="permissive")
    ids = table.column("chip_id").to_numpy(zero_copy_only=False)
    _, last = np.unique(ids[::-1], return_index=True)  # the last row of each chip_id
    table = table.take(pa.array(np.sort(len(ids) - 1 - last)))
    table = table.sort_by([("scene_datetime", "ascending"), ("chip_id", "ascending")])
    table = table.replace_schema_metadata(_union_bbox(
        dict(new.schema.metadata), None if old is None else dict(old.schema.metadata or {})))
    atomic_write(path, lambda p: pq.write_table(table, p))
    days = sorted({pd.Timestamp(t).strftime("%Y%m%d") for t in rows["scene_datetime"]})
    for day in days:
        _write_footprints(root, day, _day_batches(table, day))
    log.info("index %s: %d chip(s) (+%d)", path, table.num_rows, len(rows))
    return int(table.num_rows)


_FOOTPRINT_COLUMNS = ["chip_id", "mmsi", "scene_id", "scene_datetime", "split", "qa_pass",
                      "path", "tile_id"]


def _day_batches(table: pa.Table, day: str, rows: int = 1024) -> Iterator[gpd.GeoDataFrame]:
    """The index rows of UTC ``day`` as GeoDataFrames of at most ``rows`` rows."""
    when = pc.strftime(table.column("scene_datetime"), format="%Y%m%d", locale="C")
    sub = table.filter(pc.equal(when, day)).select([*_FOOTPRINT_COLUMNS, "geometry"])
    for batch in sub.to_batches(max_chunksize=rows):
        df = batch.to_pandas()
        yield gpd.GeoDataFrame(df.drop(columns="geometry"),
                               geometry=shapely.from_wkb(df["geometry"].to_numpy()),
                               crs="EPSG:4326")


def write_daily_footprints(root: Path, index: gpd.GeoDataFrame, day: str) -> Path:
    """``indexes/tiles_{day}.geojson`` from the index rows of that UTC day."""
    when = pd.to_datetime(index["scene_datetime"], utc=True).dt.strftime("%Y%m%d")
    return _write_footprints(root, day, [index.loc[when == day]])


def _write_footprints(root: Path, day: str, parts: Iterable[gpd.GeoDataFrame]) -> Path:
    cols = _FOOTPRINT_COLUMNS
    path = DatasetLayout(Path(root)).footprints(day)

    def write(tmp: Path) -> None:
        # streamed feature by feature: memory stays flat however large the day grows
        with tmp.open("w", encoding="utf-8") as f:
            f.write('{"type": "FeatureCollection", "features": [')
            k = 0
            for sub in parts:
                for row in sub[[*cols, "geometry"]].itertuples():
                    props = {c: getattr(row, c) for c in cols}
                    props["scene_datetime"] = pd.Timestamp(props["scene_datetime"]).isoformat()
                    props["mmsi"] = int(props["mmsi"])
                    props["qa_pass"] = bool(props["qa_pass"])
                    feat = {"type": "Feature", "geometry": row.geometry.__geo_interface__,
                            "properties": props}
                    f.write(("," if k else "") + "\n" + json.dumps(feat, default=str))
                    k += 1
            f.write("\n]}\n")

    atomic_write(path, write)
    return path
