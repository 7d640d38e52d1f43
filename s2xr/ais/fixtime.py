"""AIS times: parsing (:func:`parse_times`) and the time a fix is taken at — one rule for
every consumer (chip job, prune).

A fix's own time is ``time`` (:func:`~s2xr.ais.read_ais_table` maps ``timestamp``,
``BaseDateTime``, ``# Timestamp``, the predecessor's ``captured_time``, … onto it). A fix
without one is taken at its scheduled ``overpass_time`` (the predecessor's upload format,
``mmsi,lat,lon,overpass_time``, has only that).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from s2xr.ais.schema import TEXT, UTC_NS

TIME_COLUMNS = ("time", "overpass_time")  # canonical names, in order of preference

# an explicit UTC offset (or Z) right after a time of day: "…T10:00:00+05:30", "… 10:00Z"
_OFFSET = (r"[Tt ][0-9]{1,2}(?::?[0-9]{2}){0,2}(?:[.,][0-9]+)?"
           r"(?:[Zz]|[+-][0-9]{2}(?::?[0-9]{2})?)$")
NAT = np.iinfo(np.int64).min  # NaT as int64 nanoseconds


def _fallback_ns(s: pd.Series, dayfirst: bool) -> np.ndarray:
    """Element by element (explicit day-first formats, then dateutil): each value keeps its
    own offset, naive values are UTC → int64 ns (NaT where unparseable), by position."""
    vals = s.reset_index(drop=True)
    res = np.full(len(vals), NAT, np.int64)
    todo = np.ones(len(vals), bool)
    formats = ("%d/%m/%Y %H:%M:%S", "%d/%m/%Y %H:%M", "%d-%m-%Y %H:%M:%S") if dayfirst else ()
    for fmt in formats:
        idx = np.flatnonzero(todo)
        if not idx.size:
            break
        ns = pd.to_datetime(vals.iloc[idx].astype(object), format=fmt, errors="coerce",
                            utc=True).astype(UTC_NS).array.asi8
        ok = ns != NAT
        res[idx[ok]] = ns[ok]
        todo[idx[ok]] = False
    idx = np.flatnonzero(todo)
    if idx.size:
        res[idx] = pd.to_datetime(vals.iloc[idx].astype(object), utc=True, errors="coerce",
                                  dayfirst=dayfirst, format="mixed").astype(UTC_NS).array.asi8
    return res


def parse_times(values: pd.Series, dayfirst: bool = False) -> pd.Series:
    """Times → datetime64[ns, UTC], each row parsed on its own.

    Text: ISO 8601 (any precision) or, when that fails, anything dateutil reads (day-first
    when ``dayfirst``). A value with an explicit offset (``+05:30``, ``-03``, ``Z``, Go's
    ``+0000 UTC``) is converted to UTC; a value without one (naive) **is taken as UTC**. No
    offset is ever carried from one row to another (pandas' ISO 8601 parser does that when
    naive and offset values are mixed in one call, so the two kinds are parsed apart).
    Numbers are unix seconds; datetime columns are localised (naive → UTC) or converted.
    Unparseable values become NaT. Vectorised: 10⁶ ISO values take about a second.
    """
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return values.dt.tz_convert("UTC").astype(UTC_NS)
    if pd.api.types.is_datetime64_dtype(values.dtype):
        return values.dt.tz_localize("UTC").astype(UTC_NS)
    if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(
            values.dtype):  # unix seconds
        return pd.to_datetime(values, unit="s", utc=True, errors="coerce").astype(UTC_NS)
    s = values.astype(TEXT).str.strip()
    s = s.str.replace(r"\s+([+-][0-9]{2}:?[0-9]{2})\s+UTC$", r"\1", regex=True)  # Go's time
    s = s.str.replace(r"\s*\b(?:UTC|GMT)$", "Z", regex=True)
    s = s.str.replace(r"([0-9])\s+([+-][0-9]{2}:?[0-9]{2})$", r"\1\2", regex=True)
    present = (s.notna() & (s != "")).fillna(False).to_numpy(bool)
    has_offset = s.str.contains(_OFFSET, regex=True).fillna(False).to_numpy(bool)
    res = np.full(len(s), NAT, np.int64)
    for aware in (False, True):
        sel = present & (has_offset == aware)
        if not sel.any():
            continue
        part = s[sel]
        t = pd.to_datetime(part, format="ISO8601", errors="coerce", utc=aware)
        if not aware and isinstance(t.dtype, pd.DatetimeTZDtype):  # an offset we missed
            ns = _fallback_ns(part, dayfirst)
        else:
            t = t if aware else t.dt.tz_localize("UTC")
            ns = t.astype(UTC_NS).array.asi8.copy()
            retry = ns == NAT
            if retry.any():
                ns[retry] = _fallback_ns(part[retry], dayfirst)
        res[sel] = ns
    return pd.Series(pd.DatetimeIndex(res.view("datetime64[ns]")).tz_localize("UTC"),
                     index=values.index)



def _utc(values: pd.Series) -> pd.Series:
    # row by row, as read_ais_table does: never an offset carried from one row to another
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
