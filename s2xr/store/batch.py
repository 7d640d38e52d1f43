"""One chip batch written where it was cut: gate verdicts, per-chip files, the batch's cube
region and its index rows. :func:`write_batch` runs in the Dask task that computed the
batch (on a cluster, on the worker), so only the index rows go back to the client, which
commits them (see :mod:`s2xr.store.writer`).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely.geometry
import xarray as xr
from affine import Affine
from pyproj import Transformer

from s2xr.config import GateConfig, StorageConfig
from s2xr.gate import explain_gate
from s2xr.memory import WRITE_MMAP_THRESHOLD, limit_malloc
from s2xr.store.files import geotiff_filler, json_filler, quicklook_filler
from s2xr.store.index import INDEX_COLUMNS
from s2xr.store.layout import chip_stem
from s2xr.store.objects import FileSink, open_sink
from s2xr.store.slots import CubeSlots, write_region


@dataclass(frozen=True)
class BatchTarget:
    """Where and how every batch of one run is written (sent to the workers once per task:
    keep it small). ``slots``: the run's cube regions, or ``None`` when the client appends
    the cube (a cube from before slots) or no cube is written."""

    root: str | Path  # the dataset's chip files and cube: a local path or an object store URL
    storage: StorageConfig
    gate: GateConfig | None
    bands: tuple[str, ...]
    size_m: float
    slots: CubeSlots | None
    item_meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BatchResult:
    """What a written batch sends back: its index rows (every chip, passed or not), how many
    passed, and — only when the client appends the cube — the chips to append."""

    rows: gpd.GeoDataFrame
    n_passed: int
    append: xr.Dataset | None = None
    pid: int = 0  # the process that wrote the batch


def write_batch(block: xr.Dataset, plan: pd.DataFrame, k: int, target: BatchTarget,
                labels: dict[str, list[dict[str, Any]]] | None = None,
                n_ships: pd.Series | None = None,
                in_cube: frozenset[str] = frozenset()) -> BatchResult:
    """Write chip batch ``k``: ``block`` (gated chips, computed, rows aligned with ``plan``,
    which carries ``split``) → per-chip files of the passed chips, their cube rows (region
    ``k`` of ``target.slots``; chips in ``in_cube`` are not written again) and the batch's
    index rows. Writes; returns the rows for the client to commit."""
    limit_malloc(mmap_threshold=WRITE_MMAP_THRESHOLD)  # on a worker too
    block = explain_gate(block, target.gate)
    block = block.assign_coords(split=("chip", plan["split"].astype(object).to_numpy()))
    bands = list(target.bands)
    _write_files(block, plan, target.root, target.storage, bands, target.item_meta, labels)
    passed = block["qa_pass"].values.astype(bool)
    append = None
    if target.storage.write_zarr:
        ids = block["chip_id"].values.astype(str)
        new = np.flatnonzero(passed & ~np.isin(ids, list(in_cube)))
        if target.slots is not None:
            write_region(target.slots, k, block.isel(chip=new))
        else:
            append = block.isel(chip=new)
    rows = _index_rows(block, plan, target.root, bands, target.size_m, n_ships,
                       with_geotiff=target.storage.write_geotiff)
    return BatchResult(rows=rows, n_passed=int(passed.sum()), append=append, pid=os.getpid())


@functools.lru_cache(maxsize=64)
def _to_lonlat(epsg: int) -> Transformer:
    return Transformer.from_crs(int(epsg), 4326, always_xy=True)


def _footprint(x_left: float, y_top: float, size_m: float, epsg: int) -> Any:
    box = shapely.geometry.box(x_left, y_top - size_m, x_left + size_m, y_top)
    t = _to_lonlat(int(epsg))
    xs, ys = box.exterior.coords.xy
    lon, lat = t.transform(np.asarray(xs), np.asarray(ys))
    return shapely.geometry.Polygon(zip(lon, lat, strict=True))


def _provenance(row: pd.Series, item_meta: dict[str, Any], bands: list[str]) -> dict[str, Any]:
    meta = item_meta.get(row["item_id"], {})
    return {
        "chip_id": row["chip_id"], "mmsi": int(row["mmsi"]),
        "item_id": row["item_id"], "collection": row.get("collection"),
        "tile_id": row["tile_id"], "epsg": int(row["epsg"]),
        "sensing_time": pd.Timestamp(row["scene_datetime"]).isoformat(),
        "ais_time": None if pd.isna(row.get("ais_time")) else
        pd.Timestamp(row["ais_time"]).isoformat(),
        "dt_seconds": None if pd.isna(row.get("dt_seconds")) else float(row["dt_seconds"]),
        "position_method": row.get("method"),
        "position_uncertainty_m": None if pd.isna(row.get("uncertainty_m")) else
        float(row["uncertainty_m"]),
        "lon": float(row["lon"]), "lat": float(row["lat"]),
        "processing_baseline": row.get("processing_baseline"),
        "bands": bands,
        "asset_hrefs": meta.get("hrefs", {}),
        "scale_offset": meta.get("scale_offset", {}),
        "reflectance": "DN × scale + offset (L2A surface reflectance); NaN = nodata",
        "resampling": meta.get("resampling"),
        "chip": {"size": int(row["size"]), "resolution_m": float(row["res"]),
                 "x_left": float(row["x_left"]), "y_top": float(row["y_top"]),
                 "row0": int(row["row0"]), "col0": int(row["col0"])},
        "ship": {k: (None if pd.isna(row.get(k)) else row.get(k))
                 for k in ("ship_name", "ship_type", "length", "beam", "provider")},
    }


def _index_rows(block: xr.Dataset, plan: pd.DataFrame, root: str | Path, bands: list[str],
                size_m: float, n_ships: pd.Series | None = None, *,
                with_geotiff: bool = True) -> gpd.GeoDataFrame:
    p = plan.reset_index(drop=True)
    geoms = [_footprint(x, y, size_m, e) for x, y, e in
             zip(p["x_left"], p["y_top"], p["epsg"], strict=True)]
    qa = {k: block[k].values for k in ("qa_cloud_frac", "qa_water_frac", "qa_land_frac",
                                        "qa_ndwi_water_frac", "qa_chip_cloud_frac",
                                        "valid_frac", "qa_pass", "qa_reason")}
    paths = []
    for row, ok in zip(p.itertuples(), qa["qa_pass"], strict=True):
        stem = chip_stem(Path(), row.split, row.mmsi, row.scene_datetime, row.chip_id)
        # the chip's GeoTIFF, or its JSON record with storage.write_geotiff off (the
        # quicklook and sidecars sit beside either), relative to the root; none for
        # rejected chips
        paths.append(str(stem.with_suffix(".tif" if with_geotiff else ".json")) if ok
                     else None)
    overpass = p["overpass_time"] if "overpass_time" in p else p["scene_datetime"]
    df = pd.DataFrame({
        "chip_id": p["chip_id"], "path": paths, "mmsi": p["mmsi"].astype("int64"),
        "lat": p["lat"], "lon": p["lon"],
        "overpass_time": pd.to_datetime(overpass.fillna(p["scene_datetime"]), utc=True),
        "scene_id": p["item_id"], "scene_datetime": pd.to_datetime(p["scene_datetime"],
                                                                   utc=True),
        "cloud_cover": p["cloud_cover"], "split": p["split"], "bands": ",".join(bands),
        "has_swir": any(b.startswith("swir") for b in bands),
        **{k: v for k, v in qa.items()},
        "epsg": p["epsg"].astype("int32"), "tile_id": p["tile_id"],
        "dt_seconds": p["dt_seconds"], "ais_time": pd.to_datetime(p["ais_time"], utc=True),
        "position_method": p["method"], "uncertainty_m": p["uncertainty_m"],
        "processing_baseline": p["processing_baseline"], "collection": p["collection"],
        **{c: p.get(c, pd.NA) for c in ("ship_type", "length", "beam", "ship_name",
                                                   "provider")},
    })
    df["ship_type"] = pd.to_numeric(df["ship_type"], errors="coerce").astype("Int64")
    df["qa_reason"] = df["qa_reason"].astype(str)
    df["n_ships"] = (pd.array([pd.NA] * len(df), dtype="Int64") if n_ships is None else
                     pd.array(p["chip_id"].map(n_ships).fillna(0).to_numpy(), dtype="Int64"))
    return gpd.GeoDataFrame(df[INDEX_COLUMNS[:-1]], geometry=geoms, crs="EPSG:4326")


def _write_files(block: xr.Dataset, plan: pd.DataFrame, root: str | Path, cfg: StorageConfig,
                 bands: list[str], item_meta: dict[str, Any],
                 labels: dict[str, list[dict[str, Any]]] | None = None) -> None:
    with open_sink(root) as sink:
        _fill_files(sink, block, plan, cfg, bands, item_meta, labels)


def _fill_files(sink: FileSink, block: xr.Dataset, plan: pd.DataFrame, cfg: StorageConfig,
                bands: list[str], item_meta: dict[str, Any],
                labels: dict[str, list[dict[str, Any]]] | None = None) -> None:
    refl = block["reflectance"].values
    passed = block["qa_pass"].values
    for k, row in enumerate(plan.reset_index(drop=True).to_dict("records")):
        if not passed[k]:
            continue
        stem = chip_stem(Path(), row["split"], row["mmsi"], row["scene_datetime"],
                         row["chip_id"]).as_posix()
        transform = Affine(row["res"], 0, row["x_left"], 0, -row["res"], row["y_top"])
        prov = _provenance(pd.Series(row), item_meta, bands)
        prov["qa"] = {n: float(block[n].values[k]) for n in (
            "qa_cloud_frac", "qa_land_frac", "qa_water_frac", "qa_ndwi_water_frac",
            "valid_frac")}
        prov["split"] = row["split"]
        if labels is not None:
            prov["n_ships"] = len(labels.get(row["chip_id"], []))
            prov["labels"] = labels.get(row["chip_id"], [])
        geom = _footprint(row["x_left"], row["y_top"], row["size"] * row["res"], row["epsg"])

        if cfg.write_geotiff:
            sink.write(f"{stem}.tif", geotiff_filler(
                refl[k], bands, transform, int(row["epsg"]),
                tags={"chip_id": prov["chip_id"], "mmsi": prov["mmsi"],
                      "sensing_time": prov["sensing_time"]}))
        if cfg.write_quicklook:
            sink.write(f"{stem}.jpg", quicklook_filler(refl[k], bands))
        sink.write(f"{stem}.geojson", json_filler({
            "type": "Feature", "geometry": geom.__geo_interface__,
            "properties": {"chip_id": prov["chip_id"], "mmsi": prov["mmsi"],
                           "sensing_time": prov["sensing_time"], "item_id": prov["item_id"]}}))
        sink.write(f"{stem}.json", json_filler(prov))
