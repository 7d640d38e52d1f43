"""Deterministic train/val/test splits from hashes.

Strategies: ``chip`` (per chip_id), ``mmsi`` (every chip of a vessel in one split), ``scene``
(per item), ``tile`` (per MGRS tile: spatial). The key is hashed with ``salt`` into [0, 1)
and cut at the configured fractions.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from s2xr.config import SplitConfig

_KEY = {"chip": "chip_id", "mmsi": "mmsi", "scene": "item_id", "tile": "tile_id"}


def _unit(key: str, salt: str) -> float:
    h = hashlib.sha1(f"{salt}|{key}".encode()).hexdigest()[:12]
    return int(h, 16) / float(16**12)


def assign_splits(chips: pd.DataFrame, cfg: SplitConfig | None = None) -> pd.Series:
    """Split name per row of ``chips`` (needs the strategy's key column: chip_id, mmsi,
    item_id or tile_id). Pure; the same key always lands in the same split."""
    cfg = cfg or SplitConfig()
    total = cfg.train + cfg.val + cfg.test
    if total <= 0:
        raise ValueError("splits: train + val + test must be > 0")
    col = _KEY[cfg.strategy]
    u = np.array([_unit(str(k), cfg.salt) for k in chips[col]])
    edges = np.array([cfg.train, cfg.train + cfg.val]) / total
    names = np.where(u < edges[0], "train", np.where(u < edges[1], "val", "test"))
    return pd.Series(names, index=chips.index, name="split")
