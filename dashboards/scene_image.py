"""The scene under the map's footprints: a low-resolution true-colour image of the newest
scene the chips were cut from, in Web Mercator.

The red, green and blue assets named in one of that scene's chip JSON records
(``asset_hrefs``, with their ``scale_offset``) are read at about ``px`` pixels across. A
COG's overviews serve that read, so it is a few small requests for a remote asset. The
bands are then warped to EPSG:3857 and stretched like the quicklooks (0–0.3 reflectance,
gamma 1.5). The result is computed in the dashboard's loader thread, once per scene.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from s2xr.store.files import rgb_quicklook

log = logging.getLogger(__name__)

RGB = ("red", "green", "blue")


def newest_scene(index: pd.DataFrame) -> pd.Series | None:
    """A passed chip of the newest scene in ``index`` (its row), or None."""
    if not len(index) or "path" not in index:
        return None
    ok = index.loc[index["qa_pass"].astype(bool) & index["path"].notna()]
    if ok.empty:
        return None
    return ok.sort_values(["scene_datetime", "chip_id"]).iloc[-1]


def scene_underlay(root: Path, index: pd.DataFrame, *, px: int = 768) -> dict[str, Any] | None:
    """``{"scene_id", "rgb": uint8 (y, x, 4) RGBA (transparent off the scene), "bounds":
    (x0, y0, x1, y1) in EPSG:3857}`` of
    the newest scene of ``index`` (see the module docstring), or None when there is no
    passed chip or its assets cannot be read (logged)."""
    row = newest_scene(index)
    if row is None:
        return None
    try:
        record = json.loads((root / str(row["path"])).with_suffix(".json").read_text())
        return {"scene_id": str(row["scene_id"]), **_read_rgb(record, px)}
    except Exception as exc:  # a remote asset offline, a chip pruned meanwhile
        log.warning("dashboard: no scene image for %s: %s", row.get("scene_id"), exc)
        return None


def _read_rgb(record: dict[str, Any], px: int) -> dict[str, Any]:
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.warp import calculate_default_transform, reproject

    hrefs, scale_offset = record["asset_hrefs"], record.get("scale_offset", {})
    bands = []
    dst_transform = dst_shape = None
    for band in RGB:
        with rasterio.open(hrefs[band]) as src:
            if dst_transform is None:
                w = max(1, px)
                h = max(1, round(px * src.height / src.width))
                dst_transform, width, height = calculate_default_transform(
                    src.crs, "EPSG:3857", src.width, src.height, *src.bounds,
                    dst_width=w, dst_height=h)
                dst_shape = (height, width)
            factor = max(1, src.width // px)
            data = src.read(1, out_shape=(src.height // factor, src.width // factor),
                            resampling=Resampling.average).astype(np.float32)
            scale, offset = scale_offset.get(band, [1.0, 0.0])
            nodata = src.nodata
            refl = np.where(data == nodata, np.nan, data * scale + offset) \
                if nodata is not None else data * scale + offset
            out = np.full(dst_shape, np.nan, np.float32)
            reproject(refl, out, src_transform=src.transform * src.transform.scale(
                src.width / data.shape[1], src.height / data.shape[0]), src_crs=src.crs,
                dst_transform=dst_transform, dst_crs="EPSG:3857",
                resampling=Resampling.bilinear, src_nodata=np.nan, dst_nodata=np.nan)
            bands.append(out)
    assert dst_transform is not None and dst_shape is not None
    stack = np.stack(bands)
    alpha = np.where(np.isfinite(stack).all(axis=0), 255, 0).astype(np.uint8)  # off-scene
    rgb = np.dstack([rgb_quicklook(stack, RGB), alpha])
    h, w = dst_shape
    x0, y1 = dst_transform.c, dst_transform.f
    x1, y0 = x0 + dst_transform.a * w, y1 + dst_transform.e * h
    return {"rgb": rgb, "bounds": (x0, y0, x1, y1)}
