"""Sentinel-2 L2A item dicts: normalise, describe, de-duplicate.

Works on raw item dicts (the JSON the API returned), so ``proj:epsg`` survives: pystac ≥ 1.15
migrates it to ``proj:code`` on ``Item.from_dict`` and stackstac 0.5.1 then builds a wrong grid.
"""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd

from s2xr.errors import SceneError

log = logging.getLogger(__name__)

REFERENCE_BAND_ORDER = ("blue", "green", "red", "nir", "nir08", "swir16", "swir22", "scl")
_SAT = {"sentinel-2a": "S2A", "sentinel-2b": "S2B", "sentinel-2c": "S2C"}


def _epsg_from_code(code: Any) -> int | None:
    if isinstance(code, str):
        m = re.fullmatch(r"EPSG:(\d+)", code.strip(), re.IGNORECASE)
        return int(m.group(1)) if m else None
    return None


def _is_normalized(item: dict[str, Any]) -> bool:
    assets = item.get("assets", {}).values()
    return "proj:epsg" in item.get("properties", {}) and all(
        "proj:epsg" in a for a in assets if "proj:code" in a)


def normalize_item(item: dict[str, Any]) -> dict[str, Any]:
    """A deep copy with ``proj:epsg`` set (from ``proj:code``) on the item and each asset;
    an item that already has them is returned as is (not copied)."""
    if _is_normalized(item):
        return item
    out = copy.deepcopy(item)
    props = out.setdefault("properties", {})
    epsg = props.get("proj:epsg") or _epsg_from_code(props.get("proj:code"))
    for asset in out.get("assets", {}).values():
        a_epsg = asset.get("proj:epsg") or _epsg_from_code(asset.get("proj:code"))
        if a_epsg:
            asset["proj:epsg"] = int(a_epsg)
            epsg = epsg or a_epsg
    if epsg is None:
        raise SceneError(f"item {out.get('id')}: no proj:epsg or proj:code; cannot place it on "
                         "a grid (is this a Sentinel-2 L2A item with the projection extension?)")
    props["proj:epsg"] = int(epsg)
    return out


def item_tile(item: dict[str, Any]) -> str:
    """Tile ID ("39QTA", zone zero-padded) from ``grid:code`` or the ``mgrs:*`` fields."""
    p = item["properties"]
    code = p.get("grid:code")
    if isinstance(code, str) and code.upper().startswith("MGRS-"):
        raw = code[5:]
    elif "mgrs:utm_zone" in p:
        raw = f"{p['mgrs:utm_zone']}{p['mgrs:latitude_band']}{p['mgrs:grid_square']}"
    elif "s2:mgrs_tile" in p:
        raw = str(p["s2:mgrs_tile"])
    else:
        raise SceneError(f"item {item.get('id')}: no grid:code or mgrs:* properties")
    m = re.fullmatch(r"T?(\d{1,2})([C-X])([A-Z]{2})", raw.upper())
    if not m:
        raise SceneError(f"item {item.get('id')}: cannot read a tile ID from {raw!r}")
    return f"{int(m.group(1)):02d}{m.group(2)}{m.group(3)}"


def reflectance_params(item: dict[str, Any], band: str) -> tuple[float, float]:
    """(scale, offset) turning a band's DN into surface reflectance.

    From processing baseline 04.00 on (and for ``earthsearch:boa_offset_applied`` items) the
    DN carry a +1000 offset: reflectance = DN × 0.0001 − 0.1; before it DN × 0.0001. The
    item's ``raster:bands`` scale is used when present.
    """
    p = item["properties"]
    rb = (item["assets"].get(band, {}).get("raster:bands") or [{}])[0]
    scale = float(rb.get("scale", 0.0001))
    baseline = str(p.get("s2:processing_baseline", "99.99"))
    try:
        new = float(baseline) >= 4.0
    except ValueError:
        new = True
    offset = -0.1 if (new or p.get("earthsearch:boa_offset_applied")) else 0.0
    declared = rb.get("offset")
    if declared is not None and abs(float(declared) - offset) > 1e-9:
        log.warning("item %s band %s: raster:bands offset %s disagrees with baseline %s rule "
                    "(%s); using the rule", item.get("id"), band, declared, baseline, offset)
    return scale, offset


def items_table(items: Sequence[dict[str, Any]], bands: Iterable[str] = ()) -> pd.DataFrame:
    """One row per item: item_id, collection, datetime (UTC), tile_id, epsg, platform,
    satellite, datatake, processing_baseline, sequence, cloud_cover, x0, y0, res, height,
    width (the 10 m reference grid), hrefs (dict band → href). Raises ``SceneError`` when a
    requested band is missing from an item (the message names both)."""
    return table_of_normalized([normalize_item(raw) for raw in items], bands)


def table_of_normalized(items: Sequence[dict[str, Any]], bands: Iterable[str] = ()
                        ) -> pd.DataFrame:
    """:func:`items_table` of items already passed through :func:`normalize_item`."""
    rows = []
    bands = tuple(bands)
    for it in items:
        p = it["properties"]
        assets = it.get("assets", {})
        missing = [b for b in bands if b not in assets]
        if missing:
            raise SceneError(f"item {it['id']}: missing band asset(s) {missing}")
        ref = next((assets[b] for b in ("blue", "green", "red", "nir") if b in assets), None)
        if ref is None or "proj:transform" not in ref or "proj:shape" not in ref:
            raise SceneError(f"item {it['id']}: no 10 m asset with proj:transform/proj:shape")
        t = ref["proj:transform"]
        dt = pd.Timestamp(p["datetime"])
        dt = dt.tz_localize("UTC") if dt.tzinfo is None else dt.tz_convert("UTC")
        rows.append({
            "item_id": it["id"], "collection": it.get("collection"), "datetime": dt,
            "tile_id": item_tile(it), "epsg": int(p["proj:epsg"]),
            "platform": p.get("platform"), "satellite": _SAT.get(str(p.get("platform")), ""),
            "datatake": p.get("s2:datatake_id") or f"{p.get('platform')}_{dt:%Y%m%d}",
            "processing_baseline": str(p.get("s2:processing_baseline", "")),
            "sequence": int(p.get("s2:sequence", 0) or 0),
            "cloud_cover": float(p.get("eo:cloud_cover", float("nan"))),
            "x0": float(t[2]), "y0": float(t[5]), "res": float(t[0]),
            "height": int(ref["proj:shape"][0]), "width": int(ref["proj:shape"][1]),
            "hrefs": {k: a["href"] for k, a in assets.items() if "href" in a},
        })
    cols = ["item_id", "collection", "datetime", "tile_id", "epsg", "platform", "satellite",
            "datatake", "processing_baseline", "sequence", "cloud_cover", "x0", "y0", "res",
            "height", "width", "hrefs"]
    return pd.DataFrame(rows, columns=cols)


def dedupe_items(items: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Collapse duplicates of one tile and datatake (reprocessings, ``_1_L2A`` ids): keep the
    newest processing baseline, then the highest ``s2:sequence``, then the latest ``updated``."""
    best: dict[tuple[str, str, str], tuple[tuple[Any, ...], dict[str, Any]]] = {}
    seen_ids: set[str] = set()
    for it in items:
        if it["id"] in seen_ids:
            continue
        seen_ids.add(it["id"])
        p = it["properties"]
        day = str(p["datetime"])[:10]
        key = (item_tile(it), str(p.get("platform")), day)
        try:
            baseline = float(p.get("s2:processing_baseline", 0))
        except ValueError:
            baseline = 0.0
        rank = (baseline, int(p.get("s2:sequence", 0) or 0), str(p.get("updated", "")))
        if key not in best or rank > best[key][0]:
            if key in best:
                log.info("duplicate of %s on %s: keeping %s over %s", key[0], day, it["id"],
                         best[key][1]["id"])
            best[key] = (rank, it)
        else:
            log.info("duplicate of %s on %s: keeping %s over %s", key[0], day,
                     best[key][1]["id"], it["id"])
    return [v[1] for v in best.values()]
