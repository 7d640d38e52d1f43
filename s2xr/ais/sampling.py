"""Random sampling of ships for diversity: up to ``per_day`` distinct MMSIs per UTC day,
chosen uniformly from the distinct MMSIs the stream delivers (reservoir sampling over
MMSIs), with all their fixes of that day.

Written to ``ais/YYYYMMDD/ais_random_sample.parquet`` (columns as the overpass files). A day
already sampled by an earlier capture keeps its ships (they take slots first); the new capture
fills the remaining slots — earlier data is never dropped.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from s2xr.ais.storage import POSITION_COLUMNS, SAMPLE_NAME, atomic_parquet, coerce
from s2xr.ais.tracks import join_static
from s2xr.store.layout import DatasetLayout

log = logging.getLogger(__name__)


@dataclass
class _Day:
    fixed: set[int]  # MMSIs from an earlier capture: always kept
    before: pd.DataFrame | None  # rows stored by earlier captures
    n_seen: int = 0  # distinct new MMSIs offered so far
    seen: set[int] = field(default_factory=set)
    chosen: dict[int, list[dict]] = field(default_factory=dict)


class DailySampler:
    """Reservoir sample of distinct MMSIs per day.

    ``offer(row)`` takes a position row (mmsi, time, ...); ``write()`` merges the current
    sample of each day into ``root/ais/YYYYMMDD/ais_random_sample.parquet``. Each distinct
    MMSI of a day ends up in the sample with the same probability
    ``min(1, free slots / distinct MMSIs)``.
    """

    def __init__(self, root: str | Path, per_day: int, *, seed: int | None = None) -> None:
        if per_day < 1:
            raise ValueError("per_day must be ≥ 1")
        self.root = Path(root)
        self.per_day = per_day
        self.rng = np.random.default_rng(seed)
        self._days: dict[str, _Day] = {}

    def _path(self, day: str) -> Path:
        return DatasetLayout(self.root).ais_day(day) / SAMPLE_NAME

    def _day(self, day: str) -> _Day:
        d = self._days.get(day)
        if d is None:
            p = self._path(day)
            before = coerce(pd.read_parquet(p), POSITION_COLUMNS) if p.exists() else None
            d = _Day(fixed=set(before["mmsi"].tolist()) if before is not None else set(),
                     before=before)
            self._days[day] = d
        return d

    def offer(self, row: dict) -> bool:
        """Offer one position row; returns whether its ship is (now) in the sample."""
        day = pd.Timestamp(row["time"]).strftime("%Y%m%d")
        d = self._day(day)
        m = int(row["mmsi"])
        if m in d.fixed:
            d.chosen.setdefault(m, []).append(row)
            return True
        if m in d.chosen:
            d.chosen[m].append(row)
            return True
        if m in d.seen:
            return False
        d.seen.add(m)
        d.n_seen += 1
        slots = self.per_day - len(d.fixed)
        if slots <= 0:
            return False
        new_chosen = [k for k in d.chosen if k not in d.fixed]
        if len(new_chosen) < slots:
            d.chosen[m] = [row]
            return True
        j = int(self.rng.integers(d.n_seen))
        if j < slots:  # replace a uniformly chosen member of the reservoir
            victim = new_chosen[int(self.rng.integers(len(new_chosen)))]
            del d.chosen[victim]
            d.chosen[m] = [row]
            return True
        return False

    def sample(self, day: str) -> pd.DataFrame:
        """The day's sample: earlier captures' rows + the current selection's rows."""
        d = self._day(day)
        rows = [r for v in d.chosen.values() for r in v]
        parts = [d.before] if d.before is not None else []
        if rows:
            parts.append(coerce(pd.DataFrame(rows), POSITION_COLUMNS))
        if not parts:
            return coerce(pd.DataFrame(columns=POSITION_COLUMNS), POSITION_COLUMNS)
        both = pd.concat(parts, ignore_index=True)
        both = both.loc[~both.duplicated(["mmsi", "time", "lat", "lon"])]
        return both.sort_values(["mmsi", "time"], kind="stable").reset_index(drop=True)

    def write(self, *, source: str = "aisstream", static: pd.DataFrame | None = None) -> int:
        """Write every day's sample (temp + rename), static columns filled from ``static``
        (indexed by mmsi); returns the number of MMSIs written."""
        n = 0
        for day in sorted(self._days):
            df = self.sample(day)
            if df.empty:
                continue
            if static is not None and len(static):
                df = coerce(join_static(df, static), POSITION_COLUMNS)
            df["source"] = df["source"].fillna(source)
            atomic_parquet(df, self._path(day))
            n += df["mmsi"].nunique()
        return n
