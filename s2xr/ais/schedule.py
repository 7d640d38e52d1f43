"""Capture windows from an overpass schedule (``plan/overpass_schedule.csv``).

The schedule is DataFrame[tile_id, satellite, start_time_utc, end_time_utc, ...] (one row per
tile overpass, as ``s2xr.planning`` writes it). :func:`capture_segments_from` turns it into
consecutive segments (start, end, tiles active throughout): the capture subscribes to the
footprint boxes of exactly those tiles and reconnects when the set changes.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pandas as pd

from s2xr.errors import InputError

SCHEDULE_COLUMNS = ("tile_id", "start_time_utc", "end_time_utc")


def read_schedule(source: str | Path | pd.DataFrame) -> pd.DataFrame:
    """Read and check a schedule → DataFrame[tile_id, satellite?, start_time_utc,
    end_time_utc (datetime64[ns, UTC]), ...]. Raises ``InputError`` naming a missing column, an
    unparseable time or a window that ends before it starts."""
    if isinstance(source, pd.DataFrame):
        df, name = source.copy(), "<DataFrame>"
    else:
        path = Path(source)
        if not path.is_file():
            raise InputError(f"schedule {path} does not exist; create it with `s2xr plan` or "
                             "pass --schedule with a CSV of tile_id, satellite, "
                             "start_time_utc, end_time_utc")
        try:
            df = pd.read_csv(path, dtype={"tile_id": str})
        except Exception as exc:
            raise InputError(f"schedule {path} cannot be read: {exc}") from exc
        name = str(path)
    missing = [c for c in SCHEDULE_COLUMNS if c not in df]
    if missing:
        raise InputError(f"schedule {name}: column(s) {missing} missing (need tile_id, "
                         "start_time_utc, end_time_utc)")
    for c in ("start_time_utc", "end_time_utc"):
        t = pd.to_datetime(df[c], utc=True, errors="coerce", format="ISO8601")
        bad = t.isna() & df[c].notna()
        if bad.any() or t.isna().any():
            row = int(t.isna().to_numpy().nonzero()[0][0])
            raise InputError(f"schedule {name}: {c} in row {row} is not a time "
                             f"({df[c].iloc[row]!r}); use ISO 8601 UTC")
        df[c] = t
    back = df["end_time_utc"] < df["start_time_utc"]
    if back.any():
        row = int(back.to_numpy().nonzero()[0][0])
        raise InputError(f"schedule {name}: row {row} ends before it starts")
    df["tile_id"] = df["tile_id"].astype(str).str.strip().str.upper().str.lstrip("T")
    return df


def active_tiles(schedule: pd.DataFrame, now: pd.Timestamp) -> list[str]:
    """Tiles with a window containing ``now`` (start ≤ now < end), sorted."""
    now = pd.Timestamp(now)
    act = schedule.loc[(schedule["start_time_utc"] <= now) & (schedule["end_time_utc"] > now)]
    return sorted(set(act["tile_id"]))


def capture_segments_from(schedule: pd.DataFrame, *, now: pd.Timestamp | None = None,
                          pad_s: float = 0.0
                          ) -> list[tuple[pd.Timestamp, pd.Timestamp, tuple[str, ...]]]:
    """Consecutive (start, end, tiles) segments covering every window that ends after ``now``
    (each window widened by ``pad_s`` on both sides); segments with no tile are left out,
    neighbours with the same tiles merged, the first one starts no earlier than ``now``."""
    now = pd.Timestamp.now(tz="UTC") if now is None else pd.Timestamp(now)
    pad = pd.Timedelta(seconds=pad_s)
    w = schedule.assign(start_time_utc=schedule["start_time_utc"] - pad,
                        end_time_utc=schedule["end_time_utc"] + pad)
    w = w.loc[w["end_time_utc"] > now]
    if w.empty:
        return []
    edges = sorted({now, *[t for t in w["start_time_utc"] if t > now], *w["end_time_utc"]})
    out: list[tuple[pd.Timestamp, pd.Timestamp, tuple[str, ...]]] = []
    for a, b in itertools.pairwise(edges):
        tiles = tuple(active_tiles(w, a))
        if not tiles:
            continue
        if out and out[-1][2] == tiles and out[-1][1] == a:
            out[-1] = (out[-1][0], b, tiles)
        else:
            out.append((a, b, tiles))
    return out
