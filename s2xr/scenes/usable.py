"""Which searched items can be chipped: those with every band asset the chips need."""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

log = logging.getLogger(__name__)

REJECT_COLUMNS = ["row", "mmsi", "item_id", "stage", "reason"]


def split_usable_items(items: list[dict[str, Any]], bands: tuple[str, ...]
                       ) -> tuple[list[dict[str, Any]], pd.DataFrame]:
    """(items with every band asset, rejects naming the items and bands missing)."""
    ok, bad = [], []
    for it in items:
        missing = [b for b in bands if b not in it.get("assets", {})]
        if missing:
            log.warning("item %s lacks band(s) %s: skipped", it["id"], missing)
            bad.append({"row": pd.NA, "mmsi": pd.NA, "item_id": it["id"], "stage": "search",
                        "reason": f"item lacks band asset(s) {missing}"})
        else:
            ok.append(it)
    return ok, pd.DataFrame(bad, columns=REJECT_COLUMNS)
