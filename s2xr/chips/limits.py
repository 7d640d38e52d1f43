"""A run's limits on the chip plan: at most N new chips, or one chip per ship."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)


def limit_plan(plan: pd.DataFrame, existing: pd.DataFrame, *, max_chips: int | None = None,
               one_chip_per_ship: bool = False) -> pd.DataFrame:
    """The new chips to cut under the run's limits (plan order kept; deterministic).

    ``one_chip_per_ship``: per MMSI the row with the smallest ``|dt_seconds|`` (ties: the
    chip_id), none for vessels that already have a passed chip in ``existing`` (index rows:
    ``mmsi``, ``qa_pass``); ``max_chips``: the first that many rows."""
    out = plan
    if one_chip_per_ship and len(out):
        have = set(existing.loc[existing["qa_pass"].astype(bool), "mmsi"]) if len(existing) \
            else set()
        cand = out.loc[~out["mmsi"].isin(have)]
        order = cand.assign(_adt=cand["dt_seconds"].abs().fillna(np.inf)).sort_values(
            ["mmsi", "_adt", "chip_id"], kind="stable")
        keep = set(order.drop_duplicates("mmsi")["chip_id"])
        out = out.loc[out["chip_id"].isin(keep)]
    if max_chips is not None and len(out) > max_chips:
        out = out.head(max_chips)
    if len(out) < len(plan):
        log.info("run limits: %d of %d planned chip(s) kept", len(out), len(plan))
    return out.reset_index(drop=True)
