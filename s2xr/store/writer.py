"""Stream gated chips to every store, block by block, with bounded memory.

For each block of chips: compute it (on whatever Dask scheduler is active), write the
per-chip files in a thread pool, append the passed chips to the Zarr cube, then merge the
block's rows into the GeoParquet index and the daily footprints. The index is written last,
so it only ever names chips whose files and cube rows exist.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
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
from s2xr.memory import limit_malloc, release_free_memory
from s2xr.store.cube import append_cube, cube_chip_ids
from s2xr.store.files import write_chip_geotiff, write_json, write_quicklook
from s2xr.store.index import INDEX_COLUMNS, merge_index
from s2xr.store.labels import label_records, merge_labels
from s2xr.store.layout import chip_stem, ensure_writable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WriteSummary:
    """Counts of one :func:`write_chips` call and the full index after it."""

    n_chips: int
    n_passed: int
    n_rejected: int
    index: gpd.GeoDataFrame
    root: Path


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


def _index_rows(block: xr.Dataset, plan: pd.DataFrame, root: Path, bands: list[str],
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
        stem = chip_stem(root, row.split, row.mmsi, row.scene_datetime, row.chip_id)
        # the chip's GeoTIFF, or its JSON record with storage.write_geotiff off (the
        # quicklook and sidecars sit beside either); none for rejected chips
        paths.append(str(stem.with_suffix(".tif" if with_geotiff else ".json")
                         .relative_to(root)) if ok else None)
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


def _write_files(block: xr.Dataset, plan: pd.DataFrame, root: Path, cfg: StorageConfig,
                 bands: list[str], item_meta: dict[str, Any], pool: ThreadPoolExecutor,
                 labels: dict[str, list[dict[str, Any]]] | None = None) -> None:
    refl = block["reflectance"].values
    passed = block["qa_pass"].values
    futures = []
    for k, row in enumerate(plan.reset_index(drop=True).to_dict("records")):
        if not passed[k]:
            continue
        stem = chip_stem(root, row["split"], row["mmsi"], row["scene_datetime"],
                         row["chip_id"])
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

        def job(k: int = k, stem: Path = stem, transform: Affine = transform,
                prov: dict[str, Any] = prov, geom: Any = geom, epsg: int = int(row["epsg"])
                ) -> None:
            if cfg.write_geotiff:
                write_chip_geotiff(stem.with_suffix(".tif"), refl[k], bands, transform, epsg,
                                   tags={"chip_id": prov["chip_id"], "mmsi": prov["mmsi"],
                                         "sensing_time": prov["sensing_time"]})
            if cfg.write_quicklook:
                write_quicklook(stem.with_suffix(".jpg"), refl[k], bands)
            write_json(stem.with_suffix(".geojson"), {
                "type": "Feature", "geometry": geom.__geo_interface__,
                "properties": {"chip_id": prov["chip_id"], "mmsi": prov["mmsi"],
                               "sensing_time": prov["sensing_time"],
                               "item_id": prov["item_id"]}})
            write_json(stem.with_suffix(".json"), prov)

        futures.append(pool.submit(job))
    for f in futures:
        f.result()


def write_chips(gated: xr.Dataset, plan: pd.DataFrame, cfg: StorageConfig,
                gate_cfg: GateConfig | None = None, *, item_meta: dict[str, Any] | None = None,
                block_size: int = 32, index_every: int = 2048,
                progress: Callable[[int], None] | None = None,
                labels: pd.DataFrame | None = None,
                should_stop: Callable[[], bool] | None = None) -> WriteSummary:
    """Compute ``gated`` (from :func:`~s2xr.gate.gate_chips`, rows aligned with ``plan``,
    which must carry a ``split`` column) block by block and write every store under
    ``cfg.root``. Computes.

    Per block of ``block_size`` chips: per-chip files (thread pool), then the Zarr append.
    The GeoParquet index and the daily footprints are merged every ``index_every`` chips and
    at the end — always after the files and cube rows they name — so memory stays flat and
    index writes do not grow with the square of the dataset. ``item_meta``: item_id →
    {hrefs, scale_offset, resampling} for the JSON provenance. ``progress(n)`` is called
    after each block with its size. ``labels``: the ship labels of the chips
    (:func:`s2xr.labels.label_chips`); when given, each chip's JSON gets ``labels`` and
    ``n_ships``, the index ``n_ships`` and ``indexes/labels.parquet`` the rows of the passed
    chips (written before the index rows that name them). ``should_stop()`` is checked after
    each block: when it returns True the blocks written so far are indexed and the call
    returns early (``n_chips`` counts what was written)."""
    root = Path(cfg.root)
    ensure_writable(root)
    limit_malloc()
    if "split" not in plan:
        raise ValueError("plan needs a 'split' column (see s2xr.splits.assign_splits)")
    bands = [str(b) for b in gated.band.values]
    size_m = float(gated.sizes["x"] * gated.attrs.get("resolution_m", 10.0))
    n = gated.sizes["chip"]
    written = 0
    n_pass = 0
    index = None
    pending: list[gpd.GeoDataFrame] = []
    n_ships = labels.groupby("chip_id").size() if labels is not None else None
    # chips already in the cube are not appended again (re-runs are idempotent)
    in_cube = set(map(str, cube_chip_ids(root))) if cfg.write_zarr else set()

    def flush() -> gpd.GeoDataFrame | None:
        release_free_memory()
        if not pending:
            return None
        rows = pd.concat(pending, ignore_index=True)
        pending.clear()
        if labels is not None:
            ok = set(rows.loc[rows["qa_pass"].astype(bool), "chip_id"])
            merge_labels(root, labels.loc[labels["chip_id"].isin(ok)])
        return merge_index(root, gpd.GeoDataFrame(rows, geometry="geometry", crs="EPSG:4326"))

    def compute_block(start: int) -> tuple[slice, xr.Dataset]:
        sl = slice(start, min(start + block_size, n))
        return sl, explain_gate(gated.isel(chip=sl).compute(), gate_cfg)

    # With per-chip files, the next block is computed (cut + gate, on the Dask scheduler)
    # while this one's files and cube rows are written, so decoding and encoding overlap
    # (one more block in memory). A cube-only write gains little from it: block by block.
    overlap = cfg.write_geotiff or cfg.write_quicklook
    with ThreadPoolExecutor(max_workers=2) as pool, \
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="s2xr-prefetch") as ahead:
        nxt = ahead.submit(compute_block, 0) if n else None
        for _ in range(0, n, block_size):
            assert nxt is not None
            sl, block = nxt.result()
            more = sl.stop < n and not (should_stop is not None and should_stop())
            nxt = ahead.submit(compute_block, sl.stop) if more and overlap else None
            nxt_later = more and not overlap
            sub = plan.iloc[sl]
            block = block.assign_coords(split=("chip", sub["split"].astype(object).to_numpy()))
            recs = (label_records(labels.loc[labels["chip_id"].isin(set(sub["chip_id"]))])
                    if labels is not None else None)
            _write_files(block, sub, root, cfg, bands, item_meta or {}, pool, recs)
            passed = block["qa_pass"].values
            n_pass += int(passed.sum())
            if cfg.write_zarr:
                ids = block["chip_id"].values.astype(str)
                new = passed & np.array([i not in in_cube for i in ids], dtype=bool)
                if (passed & ~new).any():
                    log.info("%d chip(s) already in the cube: not appended again",
                             int((passed & ~new).sum()))
                append_cube(root, block.isel(chip=np.flatnonzero(new)))
                in_cube.update(ids[new])
            pending.append(_index_rows(block, sub, root, bands, size_m, n_ships,
                                       with_geotiff=cfg.write_geotiff))
            del block
            if sum(len(p) for p in pending) >= index_every:
                index = flush()
            if progress:
                progress(sl.stop - sl.start)
            written = sl.stop
            if nxt_later:
                nxt = ahead.submit(compute_block, sl.stop)
            if nxt is None and written < n:
                log.warning("stop requested: %d of %d chip(s) written, the rest left for the "
                            "next run", written, n)
                break
    index = flush() if pending else index
    if index is None:
        from s2xr.store.index import read_index

        index = read_index(root)
    return WriteSummary(n_chips=written, n_passed=n_pass, n_rejected=written - n_pass,
                        index=index,
                        root=root)
