"""Deterministic train/val/test splits from hashes, and a leakage report.

Strategies: ``chip`` (per chip_id, the predecessor's: one vessel and one scene land in every
split), ``mmsi`` (every chip of a vessel in one split; the default), ``scene`` (per item:
every chip of a scene in one split), ``tile`` (per MGRS tile: spatial). The key is hashed
with ``salt`` into [0, 1) and cut at the configured fractions, so the same key always lands
in the same split, whatever else is in the dataset.
"""

from __future__ import annotations

import hashlib
import itertools
import logging

import numpy as np
import pandas as pd

from s2xr.config import SplitConfig

log = logging.getLogger(__name__)

_KEY = {"chip": "chip_id", "mmsi": "mmsi", "scene": "item_id", "tile": "tile_id"}
# what may leak between splits: name → column of the chip index (alternatives in order)
LEAKAGE_KEYS = {"vessels": ("mmsi",), "scenes": ("scene_id", "item_id"),
                "tiles": ("tile_id",)}


def _unit(key: str, salt: str) -> float:
    h = hashlib.sha1(f"{salt}|{key}".encode()).hexdigest()[:12]
    return int(h, 16) / float(16**12)


def _key_column(chips: pd.DataFrame, strategy: str) -> str:
    col = _KEY[strategy]
    if col == "item_id" and col not in chips and "scene_id" in chips:
        return "scene_id"  # the chip index names the item scene_id
    if col not in chips:
        raise KeyError(f"splits.strategy {strategy!r} needs a {col!r} column")
    return col


def assign_splits(chips: pd.DataFrame, cfg: SplitConfig | None = None) -> pd.Series:
    """Split name per row of ``chips`` (needs the strategy's key column: chip_id, mmsi,
    item_id — or the index's scene_id — or tile_id). Pure; the same key always lands in the
    same split."""
    cfg = cfg or SplitConfig()
    total = cfg.train + cfg.val + cfg.test
    if total <= 0:
        raise ValueError("splits: train + val + test must be > 0")
    col = _key_column(chips, cfg.strategy)
    u = np.array([_unit(str(k), cfg.salt) for k in chips[col]])
    edges = np.array([cfg.train, cfg.train + cfg.val]) / total
    names = np.where(u < edges[0], "train", np.where(u < edges[1], "val", "test"))
    return pd.Series(names, index=chips.index, name="split")


def leakage_report(index: pd.DataFrame, *, split_column: str = "split") -> pd.DataFrame:
    """Vessels, scenes and tiles shared between splits. Pure.

    ``index``: chip rows (e.g. the passed rows of the chip index) with ``split`` and the key
    columns mmsi, scene_id (or item_id) and tile_id. One row per key kind (``vessels``,
    ``scenes``, ``tiles``; kinds whose column is missing are left out) with columns
    ``column``, ``n_keys`` (distinct values), ``n_shared`` (values in more than one split),
    ``n_chips``, ``n_chips_shared`` (chips whose value is shared), ``frac_chips_shared``,
    and one column per split pair (``train/val`` …: values in both).
    """
    found = set(index[split_column].dropna().astype(str)) if len(index) else set()
    order = ("train", "val", "test")
    splits = [s for s in order if s in found] + sorted(found - set(order))
    pairs = [f"{a}/{b}" for a, b in itertools.combinations(splits, 2)]
    rows = []
    for kind, options in LEAKAGE_KEYS.items():
        col = next((c for c in options if c in index), None)
        if col is None:
            continue
        sub = index[[col, split_column]].dropna()
        present = pd.crosstab(sub[col].astype(str), sub[split_column].astype(str)) > 0
        shared = present.index[present.sum(axis=1) > 1]
        n_chips_shared = int(sub[col].astype(str).isin(shared).sum())
        row = {"kind": kind, "column": col, "n_keys": len(present),
               "n_shared": len(shared), "n_chips": len(sub),
               "n_chips_shared": n_chips_shared,
               "frac_chips_shared": n_chips_shared / len(sub) if len(sub) else 0.0}
        for p in pairs:
            a, b = p.split("/")
            row[p] = int((present[a] & present[b]).sum())
        rows.append(row)
    cols = ["kind", "column", "n_keys", "n_shared", "n_chips", "n_chips_shared",
            "frac_chips_shared", *pairs]
    return pd.DataFrame(rows, columns=cols).set_index("kind")
