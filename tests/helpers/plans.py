"""Chip plans written by hand for cut tests: windows given as top-left pixels on an item's
10 m grid (what :func:`s2xr.chips.plan_chips` would produce for ships there)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def plan_at_pixels(item: dict, rc: list[tuple[int, int]], size: int = 64) -> pd.DataFrame:
    """A plan of chips with top-left pixels ``rc`` (row, col) on ``item``'s 10 m grid."""
    t = item["assets"]["blue"]["proj:transform"]
    n = len(rc)
    return pd.DataFrame({
        "chip_id": [f"{i:016x}" for i in range(n)], "mmsi": 235000001 + np.arange(n),
        "item_id": item["id"], "tile_id": "30STE", "epsg": item["properties"]["proj:epsg"],
        "scene_datetime": pd.Timestamp(item["properties"]["datetime"]), "lon": 0.0,
        "lat": 0.0, "x_left": [t[2] + c * 10.0 for _, c in rc],
        "y_top": [t[5] - r * 10.0 for r, _ in rc], "size": size, "res": 10.0})
