"""The Earth Search twin's inputs for tests: the real items in tests/data, the derived
pre-04.00 item, and what a chip on them must hold (DN × scale + offset of the item's rule)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from s2xr.demo.earth_search import before_baseline_4, twin_dn

DATA = Path(__file__).resolve().parent.parent / "data"
REAL_ITEM_FILES = [*sorted((DATA / "stac").glob("*.json")),
                   *sorted((DATA / "stac_extra").glob("*.json"))]
PRE_04_DAY = "2021-12-24"


def twin_items() -> list[dict[str, Any]]:
    """The real Earth Search items (both collections) plus one derived pre-04.00 item."""
    items = [json.loads(p.read_text()) for p in REAL_ITEM_FILES]
    base = next(it for it in items if it["id"] == "S2B_39QTA_20230623_0_L2A")
    return [*items, before_baseline_4(base, PRE_04_DAY)]


def reflectance_offset(item: dict[str, Any]) -> float:
    """The reflectance rule, written out: −0.1 from processing baseline 04.00 on (and for
    ``earthsearch:boa_offset_applied`` items), else 0."""
    p = item["properties"]
    new = float(p["s2:processing_baseline"]) >= 4.0
    return -0.1 if new or p.get("earthsearch:boa_offset_applied") else 0.0


def expected_chip(item: dict[str, Any], band: str, x_left: float, y_top: float,
                  size: int) -> np.ndarray:
    """The reflectance a ``size``² 10 m chip with top-left (x_left, y_top) must hold for a
    10 m band of ``item``: the twin's DN on the asset's grid × 0.0001 + the rule's offset."""
    t = item["assets"][band]["proj:transform"]
    col0 = (x_left - t[2]) / t[0]
    row0 = (t[5] - y_top) / -t[4]
    assert col0 == int(col0) and row0 == int(row0), "chip is not on the item's pixel grid"
    rows, cols = np.mgrid[int(row0):int(row0) + size, int(col0):int(col0) + size]
    return (twin_dn(band, rows, cols).astype(np.float64) * 0.0001
            + reflectance_offset(item)).astype(np.float32)
