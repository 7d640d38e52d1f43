"""The predecessor's config keys, one rule each: the s2xr keys a value sets and the note, or
the reason it is dropped (:data:`RULES`, used by :func:`s2xr.migrate.migrate_config`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from s2xr.config import REFLECTANCE_BANDS, SWIR_BANDS
from s2xr.errors import TileError
from s2xr.grid import parse_tile_id
from s2xr.store.layout import DatasetLayout

# Sentinel-2 band numbers (the predecessor's names) → Earth Search asset keys (s2xr's)
BAND_KEYS = {"B01": "coastal", "B02": "blue", "B03": "green", "B04": "red", "B05": "rededge1",
             "B06": "rededge2", "B07": "rededge3", "B08": "nir", "B8A": "nir08",
             "B09": "nir09", "B11": "swir16", "B12": "swir22"}
RESAMPLING = {"bicubic": "cubic", "cubic": "cubic", "bilinear": "bilinear",
              "nearest": "nearest"}
_L = DatasetLayout(Path())  # s2xr's paths relative to storage.root
_CHIP = f"{_L.chips}/{{split}}/{{mmsi}}/{{YYYYMMDD}}/{{chip_id}}"


@dataclass
class Context:
    """What a rule may look at besides its own value."""

    old: Mapping[str, Any]  # the flattened old config
    base_dir: Path  # the old config's folder (its relative paths)


Rule = Callable[[Any, Context], tuple[dict[str, Any], str]]


def _get(ctx: Context, key: str, default: Any = None) -> Any:
    return ctx.old.get(key, default)


def _to(new: str, note: str = "") -> Rule:
    """The value as is, under the s2xr key ``new``."""
    return lambda v, _ctx: ({new: v}, note)


def _drop(reason: str) -> Rule:
    return lambda _v, _ctx: ({}, reason)


def _mode(v: Any, _ctx: Context) -> tuple[dict[str, Any], str]:
    notes = {"auto": "s2xr's auto: per satellite the ESA plan where it covers the horizon, "
                     "the TLE elsewhere (the predecessor: the ESA download, else the TLE)",
             "backfill": "s2xr's backfill puts past days' windows at each tile's real pass "
                         "time (the predecessor: 10:30 UTC)"}
    return {"planning.mode": v}, notes.get(str(v), "")


def _tiles(v: Any, _ctx: Context) -> tuple[dict[str, Any], str]:
    good, bad = [], []
    for raw in (v if isinstance(v, list) else [v]):
        try:
            code = parse_tile_id(str(raw)).code
        except TileError:
            bad.append(str(raw))
            continue
        if code not in good:
            good.append(code)
    note = "tile IDs without the leading T"
    if bad:
        note += f"; not Sentinel-2 tiles, left out: {', '.join(bad)}"
    return ({"planning.tiles": good} if good else {}), note


def _tle(v: Any, _ctx: Context) -> tuple[dict[str, Any], str]:
    if not v:
        return {}, "empty: s2xr uses the TLEs it ships (planning.tle_path names others)"
    return {"planning.tle_path": str(v)}, ("fetched at every plan; unset planning.tle_path "
                                           "to use the TLEs s2xr ships (offline)")


def _esa_csv(v: Any, ctx: Context) -> tuple[dict[str, Any], str]:
    if not v:
        return {}, "empty: no ESA plan file (planning.esa_plan_path names one)"
    path = Path(str(v))
    found = path if path.exists() else ctx.base_dir / path
    if not found.exists():
        return {}, (f"{path} not found (nor beside the old config); the predecessor fell "
                    "back to backfill without it, s2xr would stop: set "
                    "planning.esa_plan_path when you have the plan")
    return {"planning.esa_plan_path": str(found)}, (
        "read as an ESA plan CSV; rows without a satellite are told apart by orbit")


def _esa_url(v: Any, _ctx: Context) -> tuple[dict[str, Any], str]:
    if not v:
        return {}, "empty: nothing to download (planning.esa_plan_urls lists plan URLs)"
    return {"planning.esa_plan_urls": [str(v)]}, "fetched when planning; a failed download warns"


def _provider(v: Any, _ctx: Context) -> tuple[dict[str, Any], str]:
    if str(v).lower() == "aisstream":
        return {}, ("aisstream.io is s2xr's live source (ais.url; the key in "
                    "AISSTREAM_API_KEY)")
    return {}, (f"s2xr captures live from aisstream.io only; read {v}'s files with "
                "s2xr chip --ais FILE")


def _boxes(v: Any, _ctx: Context) -> tuple[dict[str, Any], str]:
    if not v:
        return {}, "empty (the whole world): s2xr's default too (ais.boxes empty)"
    try:
        boxes = [[float(b[1]), float(b[0]), float(b[3]), float(b[2])] for b in v]
    except (TypeError, ValueError, IndexError, KeyError):
        return {}, ("not a list of [min_lon, min_lat, max_lon, max_lat] boxes; set ais.boxes "
                    "(south, west, north, east) by hand")
    return {"ais.boxes": boxes}, ("read as [min_lon, min_lat, max_lon, max_lat] (the "
                                  "predecessor's bbox order) → (south, west, north, east)")


def _collection(v: Any, _ctx: Context) -> tuple[dict[str, Any], str]:
    note = ("kept; s2xr's default is sentinel-2-c1-l2a (Collection 1, reprocessed)"
            if v == "sentinel-2-l2a" else "")
    return {"stac.collection": v}, note


def _bands(v: Any, ctx: Context) -> tuple[dict[str, Any], str]:
    swir = _get(ctx, "tiling.bands_swir", ["B11", "B12"]) or []
    core, bad = _band_keys(v)
    extra, bad_swir = _band_keys(swir)
    include_swir = set(extra) == set(SWIR_BANDS)
    bands = core + ([] if include_swir else [b for b in extra if b not in core])
    note = "band numbers as Earth Search asset keys"
    if bad or bad_swir:
        note += f"; no such L2A reflectance band, left out: {', '.join(bad + bad_swir)}"
    return {"chip.bands": bands, "chip.include_swir": include_swir}, note


def _band_keys(names: Any) -> tuple[list[str], list[str]]:
    """(s2xr band keys, names that are no L2A reflectance band) of band numbers."""
    good: list[str] = []
    bad: list[str] = []
    for n in (names if isinstance(names, list) else [names]):
        key = BAND_KEYS.get(str(n).upper(), str(n).lower())
        if key not in REFLECTANCE_BANDS:
            bad.append(str(n))
        elif key not in good:
            good.append(key)
    return good, bad


def _swir(v: Any, ctx: Context) -> tuple[dict[str, Any], str]:
    # chip.bands / chip.include_swir are set with tiling.bands_core (see _bands)
    if "tiling.bands_core" not in ctx.old:
        return _bands(["B02", "B03", "B04", "B08"], ctx)
    return {"chip.include_swir": set(_band_keys(v)[0]) == set(SWIR_BANDS)}, (
        "[B11, B12] → include_swir: true; any other SWIR choice goes into chip.bands")


def _resample_swir(v: Any, _ctx: Context) -> tuple[dict[str, Any], str]:
    if v:
        return {}, "always so: s2xr resamples every band onto the chip's grid (chip.resolution)"
    return {}, "s2xr cannot keep SWIR at 20 m: every band is on the chip's grid"


def _resampling(v: Any, _ctx: Context) -> tuple[dict[str, Any], str]:
    name = RESAMPLING.get(str(v).lower())
    if name is None:
        return {}, "s2xr resamples with bilinear, cubic or nearest: set chip.resampling"
    return {"chip.resampling": name}, "" if name == v else f"{v} is s2xr's {name}"


_GEOTIFF = ("s2xr writes each chip's GeoTIFF one way: float32, zstd with predictor 3, one "
            "256/512 px tile without overviews (a COG; larger chips: COG, 256 px blocks)")


def _use_scl(v: Any, _ctx: Context) -> tuple[dict[str, Any], str]:
    return {}, ("always so: s2xr's gate reads SCL" if v else
                "s2xr's gate always reads SCL; set gate.enabled: false for no gate")


def _ndwi(v: Any, _ctx: Context) -> tuple[dict[str, Any], str]:
    if v:
        return {}, "always so: the NDWI water test is gate.ndwi_threshold / gate.min_water"
    return {"gate.min_water": 0.0}, "no NDWI water fraction required"


def _scl_exclude(v: Any, _ctx: Context) -> tuple[dict[str, Any], str]:
    names = {str(x).lower() for x in (v if isinstance(v, list) else [v])}
    other = sorted(names - {"clouds", "cirrus", "cloud_shadows"})
    note = "SCL 8, 9 (clouds) and 10 (cirrus) always count as cloud; cloud_shadows adds 3"
    if other:
        note += f"; not a gate class in s2xr, ignored: {', '.join(other)}"
    return {"gate.cloud_includes_shadow": "cloud_shadows" in names}, note


def _min_water(v: Any, ctx: Context) -> tuple[dict[str, Any], str]:
    if _get(ctx, "masks.derive_water_via_ndwi", True) is False:
        return {}, "masks.derive_water_via_ndwi is false: gate.min_water is 0"
    return {"gate.min_water": v}, ""


def _splits(name: str) -> Rule:
    def rule(v: Any, ctx: Context) -> tuple[dict[str, Any], str]:
        first = next(k for k in ("splits.train", "splits.val", "splits.test") if k in ctx.old)
        if f"splits.{name}" != first:
            return {f"splits.{name}": v}, ""
        return {f"splits.{name}": v, "splits.strategy": "chip"}, (
            "strategy chip: the predecessor split per chip (a hash of chip_id); s2xr's "
            "default, mmsi, keeps each ship's chips in one split")
    return rule


def _layout(name: str, path: str) -> Rule:
    return _drop(f"s2xr's dataset layout is fixed: {name} → {path}")


def _alert_url(v: Any, _ctx: Context) -> tuple[dict[str, Any], str]:
    return {}, ("empty: no alert (s2xr qa-report --alert-url URL sends one)" if not v else
                "not a config key in s2xr: s2xr qa-report --alert-url URL")


RULES: dict[str, Rule] = {
    "satellite_tracking.mode": _mode,
    "satellite_tracking.tiles": _tiles,
    "satellite_tracking.tle_source": _tle,
    "satellite_tracking.esa_csv_path": _esa_csv,
    "satellite_tracking.esa_download_url": _esa_url,
    "satellite_tracking.cache_dir": _drop(
        f"fixed: versioned schedules go to {_L.schedule.parent}/schedules/YYYYMMDD/ under "
        "storage.root"),
    "satellite_tracking.prediction_days": _to("planning.prediction_days"),
    "satellite_tracking.overpass_window_minutes": _to(
        "planning.overpass_window_minutes", "s2xr pads the time the swath covers the tile "
        "by this much on each side (the predecessor: ± around the pass centre)"),
    "satellite_tracking.min_elevation_deg": _drop(
        "s2xr plans by swath coverage (290 km) and sun elevation, not by the satellite's "
        "elevation above the tile"),
    "ais.provider": _provider,
    "ais.random_sampling_per_day": _to("ais.random_sampling_per_day",
                                       "distinct MMSIs kept per UTC day in the random sample"),
    "ais.write_batch_size": _to("ais.flush_rows"),
    "ais.reconnect_seconds": _to("ais.backoff_initial_s", "the first reconnect delay; s2xr "
                                 "then backs off up to ais.backoff_max_s"),
    "ais.random_bounding_boxes": _boxes,
    "stac.primary_endpoint": _to("stac.api_url"),
    "stac.collection": _collection,
    "stac.cloud_cover_max": _to("stac.max_cloud", "the predecessor relaxed it to 60 and 100 "
                                "when it found nothing; s2xr does not"),
    "stac.search_window_hours": _to("stac.window_hours", "± hours around each AIS time (the "
                                    "predecessor relaxed it to 72 and 120 h)"),
    "stac.max_items_per_overpass": _drop(
        "s2xr searches each tile and day once, pages through every item (stac.page_size) "
        "and chips every usable scene in the window"),
    "scheduler.lag_days_l2a": _to("ops.lag_days"),
    "tiling.chip_size_px": _to("chip.size"),
    "tiling.gsd_m": _to("chip.resolution"),
    "tiling.bands_core": _bands,
    "tiling.bands_swir": _swir,
    "tiling.resample_swir_to_10m": _resample_swir,
    "tiling.resample_method": _resampling,
    "tiling.write_cog": _to("storage.write_geotiff"),
    "tiling.block_size": _drop(_GEOTIFF + " (storage.block_size is chips per write block)"),
    "tiling.overviews": _drop(_GEOTIFF),
    "tiling.compression": _drop(_GEOTIFF),
    "masks.use_scl": _use_scl,
    "masks.derive_water_via_ndwi": _ndwi,
    "masks.scl_classes_exclude": _scl_exclude,
    "gate.enabled": _to("gate.enabled"),
    "gate.center_window_px": _to("gate.centre_px"),
    "gate.max_cloud_center_frac": _to("gate.max_cloud"),
    "gate.max_land_center_frac": _to("gate.max_land"),
    "gate.ndwi_water_thresh": _to("gate.ndwi_threshold"),
    "gate.min_water_center_frac": _min_water,
    "storage.root": _to("storage.root"),
    "storage.layout.chips": _layout("chips", f"{_CHIP}.tif"),
    "storage.layout.chip_geojson": _layout("chip_geojson", f"{_CHIP}.geojson"),
    "storage.layout.chip_meta": _layout("chip_meta", f"{_CHIP}.json"),
    "storage.layout.chip_quicklook": _layout("chip_quicklook", f"{_CHIP}.jpg"),
    "storage.layout.daily_tiles_geojson": _layout("daily_tiles_geojson",
                                                  str(_L.footprints("{YYYYMMDD}"))),
    "storage.layout.tiles_index": _layout("tiles_index", str(_L.index)),
    "storage.layout.ais_index": _layout("ais_index", str(_L.ais_observations)),
    "storage.layout.qa_report": _layout("qa_report", str(_L.qa_report)),
    "splits.train": _splits("train"),
    "splits.val": _splits("val"),
    "splits.test": _splits("test"),
    "logging.level": _drop("not a config key in s2xr: the CLI logs INFO; -q for warnings "
                           "only, -v / -vv for more"),
    "logging.file": lambda v, _c: ({}, f"not a config key in s2xr: s2xr --log-file {v} "
                                       f"(or S2XR_LOG_FILE={v})"),
    "logging.rotation": _drop("fixed: --log-file rotates at 10 MB and keeps 5 files"),
    "ops.max_retries": _to("ops.max_retries"),
    "ops.initial_backoff_min": _to("ops.initial_backoff_min"),
    "ops.max_backoff_hours": _to("ops.max_backoff_hours"),
    "ops.retry_batch_limit": lambda v, _c: ({}, f"not a config key in s2xr: s2xr ops retry "
                                                f"--limit {v}"),
    "ops.parallel_chips": _drop("s2xr computes chips in parallel on Dask: dask.scheduler, "
                                "chip.batch_size"),
    "alerts.webhook_url": _alert_url,
    "alerts.threshold_fail_rate": lambda v, _c: ({}, f"not a config key in s2xr: s2xr "
                                                     f"qa-report --alert-threshold {v}"),
}
