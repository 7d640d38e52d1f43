"""STAC items for the embedded world, shaped like Earth Search v1 ``sentinel-2-l2a`` items."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from affine import Affine
from odc.geo.geobox import GeoBox

from s2xr.grid import geobox_epsg, parse_tile_id

EO_BANDS = {
    "blue": ("B02", "Blue (band 2) - 10m", 0.49, 0.098),
    "green": ("B03", "Green (band 3) - 10m", 0.56, 0.045),
    "red": ("B04", "Red (band 4) - 10m", 0.665, 0.038),
    "nir": ("B08", "NIR 1 (band 8) - 10m", 0.842, 0.145),
    "swir16": ("B11", "SWIR 1 (band 11) - 20m", 1.61, 0.143),
    "swir22": ("B12", "SWIR 2 (band 12) - 20m", 2.19, 0.242),
}
STAC_EXTENSIONS = [
    "https://stac-extensions.github.io/eo/v1.0.0/schema.json",
    "https://stac-extensions.github.io/grid/v1.0.0/schema.json",
    "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
    "https://stac-extensions.github.io/projection/v1.0.0/schema.json",
    "https://stac-extensions.github.io/mgrs/v1.0.0/schema.json",
    "https://stac-extensions.github.io/view/v1.0.0/schema.json",
]


def _asset(path: Path, key: str, gbox: GeoBox, dtype: str) -> dict[str, Any]:
    t = gbox.transform
    res = abs(t.a)
    asset: dict[str, Any] = {
        "href": path.resolve().as_uri(),
        "type": "image/tiff; application=geotiff; profile=cloud-optimized",
        "proj:shape": [gbox.height, gbox.width],
        "proj:transform": [t.a, t.b, t.c, t.d, t.e, t.f],
        "roles": ["data", "reflectance"] if key != "scl" else ["data"],
    }
    if key == "scl":
        asset["title"] = "Scene classification map (SCL)"
        asset["raster:bands"] = [{"nodata": 0, "data_type": "uint8",
                                  "spatial_resolution": int(res)}]
    else:
        _name, title, wl, fwhm = EO_BANDS[key]
        asset["title"] = title
        asset["gsd"] = int(res)
        asset["eo:bands"] = [{"name": key, "common_name": key, "description": title,
                              "center_wavelength": wl, "full_width_half_max": fwhm}]
        asset["raster:bands"] = [{"nodata": 0, "data_type": dtype, "bits_per_sample": 15,
                                  "spatial_resolution": int(res), "scale": 0.0001,
                                  "offset": -0.1}]
    return asset


def make_item(*, tile: str, platform: str, sensing: pd.Timestamp, sequence: int,
              baseline: str, gbox10: GeoBox, paths: dict[str, Path], cloud_cover: float,
              collection: str) -> dict[str, Any]:
    """One Earth-Search-v1-like item dict for a rendered scene (hrefs are file:// URIs)."""
    tid = parse_tile_id(tile)
    sat = {"sentinel-2a": "S2A", "sentinel-2b": "S2B", "sentinel-2c": "S2C"}[platform]
    day = sensing.strftime("%Y%m%d")
    item_id = f"{sat}_{tid.code}_{day}_{sequence}_L2A"
    t10 = gbox10.transform
    gbox20 = GeoBox((gbox10.height // 2, gbox10.width // 2),
                    Affine(2 * t10.a, 0, t10.c, 0, 2 * t10.e, t10.f), gbox10.crs)
    geom = gbox10.extent.to_crs("EPSG:4326", resolution=1000).geom
    lon0, lat0, lon1, lat1 = geom.bounds
    datatake = f"G{sat}_{sensing.strftime('%Y%m%dT%H%M%S')}_000000_N{baseline}"
    assets = {}
    for key in ("blue", "green", "red", "nir"):
        assets[key] = _asset(paths[key], key, gbox10, "uint16")
    for key in ("swir16", "swir22"):
        assets[key] = _asset(paths[key], key, gbox20, "uint16")
    assets["scl"] = _asset(paths["scl"], "scl", gbox20, "uint8")
    if "thumbnail" in paths:
        assets["thumbnail"] = {"href": paths["thumbnail"].resolve().as_uri(),
                               "type": "image/png", "title": "Thumbnail", "roles": ["thumbnail"]}
    iso = sensing.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "stac_extensions": STAC_EXTENSIONS,
        "id": item_id,
        "collection": collection,
        "geometry": geom.__geo_interface__,
        "bbox": [lon0, lat0, lon1, lat1],
        "properties": {
            "datetime": iso,
            "created": iso,
            "updated": iso,
            "platform": platform,
            "constellation": "sentinel-2",
            "instruments": ["msi"],
            "eo:cloud_cover": round(cloud_cover, 6),
            "proj:epsg": geobox_epsg(gbox10),
            "mgrs:utm_zone": tid.zone,
            "mgrs:latitude_band": tid.band,
            "mgrs:grid_square": tid.square,
            "grid:code": tid.grid_code,
            "s2:processing_baseline": baseline,
            "s2:product_type": "S2MSI2A",
            "s2:datatake_id": datatake,
            "s2:sequence": str(sequence),
            "s2:product_uri": f"{sat}_MSIL2A_{sensing.strftime('%Y%m%dT%H%M%S')}_N"
                              f"{baseline.replace('.', '')}_T{tid.code}.SAFE",
            "earthsearch:boa_offset_applied": True,
            "s2xr:synthetic": True,
        },
        "links": [],
        "assets": assets,
    }


def make_collection(collection: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    """A minimal STAC Collection covering ``items``."""
    lons = [b for it in items for b in (it["bbox"][0], it["bbox"][2])]
    lats = [b for it in items for b in (it["bbox"][1], it["bbox"][3])]
    times = sorted(it["properties"]["datetime"] for it in items)
    return {
        "type": "Collection",
        "stac_version": "1.0.0",
        "id": collection,
        "title": "s2xr embedded world (synthetic Sentinel-2 L2A)",
        "description": "Synthetic Sentinel-2-like L2A scenes generated by s2xr.demo; "
                       "not real imagery.",
        "license": "CC0-1.0",
        "extent": {"spatial": {"bbox": [[min(lons), min(lats), max(lons), max(lats)]]},
                   "temporal": {"interval": [[times[0], times[-1]]]}},
        "links": [],
    }
