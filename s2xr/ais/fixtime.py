"""The time an AIS fix is taken at — one rule for every consumer (chip job, prune).

A fix's own time is ``time`` (:func:`~s2xr.ais.read_ais_table` maps ``timestamp``,
``BaseDateTime``, ``# Timestamp``, the predecessor's ``captured_time``, … onto it). A fix
without one is taken at its scheduled ``overpass_time`` (the predecessor's upload format,
``mmsi,lat,lon,overpass_time``, has only that).
"""

from __future__ import annotations

import pandas as pd

TIME_COLUMNS = ("time", "overpass_time")  # canonical names, in order of preference


def _utc(values: pd.Series) -> pd.Series:
    # row by row, as read_ais_table does: never an offset carried from one row to another
    from s2xr.ais.schema import parse_times

    return parse_times(values)


def fix_times(points: pd.DataFrame) -> pd.DataFrame:
    """``points`` (canonical columns) with ``time`` filled from ``overpass_time`` where a fix
    has no time of its own. Returns ``points`` itself when there is nothing to fill, else a
    copy; a table with neither column is returned unchanged (no ``time`` column)."""
    if "overpass_time" not in points:
        return points
    if "time" in points and not points["time"].isna().any():
        return points
    own = (_utc(points["time"]) if "time" in points else
           pd.Series(pd.NaT, index=points.index, dtype="datetime64[ns, UTC]"))
    return points.assign(time=own.fillna(_utc(points["overpass_time"])))
