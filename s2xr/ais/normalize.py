"""AIS row validation: canonical columns, compact dtypes, rejects (bad rows are recorded and
skipped, never fatal). The schema it produces is described in :mod:`s2xr.ais.schema`.

Inputs can be validated in chunks (:func:`normalize_chunks`): each chunk is checked and
shrunk to the compact dtypes as it arrives, so reading a file costs about the size of
its valid points plus one chunk.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from s2xr.ais.fixtime import parse_times
from s2xr.ais.mmsi import check_mmsi
from s2xr.ais.schema import (
    CHUNK_ROWS,
    FLOAT_COLUMNS,
    OPTIONAL_COLUMNS,
    POINT_COLUMNS,
    REJECT_COLUMNS,
    SHIP_TYPE_NAMES,
    TEXT,
    UTC_NS,
    AisTable,
    canonical_names,
)
from s2xr.ais.sentinels import angle_values, sog_values
from s2xr.errors import InputError
from s2xr.memory import release_free_memory


# ----------------------------------------------------------------------------- columns
def _ship_type_codes(values: pd.Series) -> pd.Series:
    """Numeric AIS ship types, or DMA names ("Cargo", "Tanker", ...) mapped to their code;
    0 (not available) and anything else → <NA>."""
    num = pd.to_numeric(values, errors="coerce")
    if not pd.api.types.is_numeric_dtype(values.dtype):
        names = values.astype(TEXT).str.strip().str.lower().map(SHIP_TYPE_NAMES)
        num = num.fillna(pd.to_numeric(names, errors="coerce"))
    num = num.astype("Float64")
    out = num.where((num > 0) & (num < 100) & (num % 1 == 0))
    return out.astype("Int64")


def _text(values: pd.Series) -> pd.Series:
    """Raw values as text (<NA> stays missing); never one Python object per row."""
    return values.astype(TEXT)


def _optional(name: str, values: pd.Series) -> pd.Series:
    if name == "imo":  # 9234567 or MarineCadastre's "IMO9234567"
        if not pd.api.types.is_numeric_dtype(values.dtype):
            values = _text(values).str.strip().str.replace(r"^IMO\s*", "", regex=True)
        return pd.to_numeric(values, errors="coerce").astype("Float64").round().astype("Int64")
    if name == "nav_status":
        num = pd.to_numeric(values, errors="coerce")
        if (num.notna() | values.isna()).all() and ((num.dropna() % 1) == 0).all():
            return num.astype("Int64")
    return _text(values).str.strip()


@dataclass
class _Chunk:
    rows: np.ndarray  # row numbers in the input
    columns: dict[str, Any]  # column → array (compact dtypes), same length as rows
    rejects: list[pd.DataFrame]


def _reject_frame(rows: np.ndarray, mmsi: Any, field: str, value: Any, reason: Any
                  ) -> pd.DataFrame:
    return pd.DataFrame({"row": np.asarray(rows, dtype=np.int64),
                         "mmsi": pd.array(mmsi, dtype="Int64"), "field": field,
                         "value": pd.array(value, dtype=TEXT), "reason": reason})


def _validate(df: pd.DataFrame, row0: int, *, source: str, provider: str, dayfirst: bool,
              limit: pd.Timestamp) -> _Chunk:
    """One chunk (canonical columns, positional index) → its valid rows in the compact
    dtypes, and its rejects (first failing field wins)."""
    n = len(df)
    rows = row0 + np.arange(n, dtype=np.int64)
    bad = np.zeros(n, bool)
    rejects: list[pd.DataFrame] = []
    check = check_mmsi(df["mmsi"])
    mmsi = check.mmsi.array

    def reject(mask: np.ndarray, field: str, reason: str | np.ndarray) -> None:
        mask = mask & ~bad
        if mask.any():
            idx = np.flatnonzero(mask)
            value = _text(df[field].iloc[idx]) if field in df else [pd.NA] * idx.size
            why = reason[idx] if isinstance(reason, np.ndarray) else reason
            rejects.append(_reject_frame(rows[idx], mmsi[idx], field, value, why))
            bad[idx] = True

    reject(~check.ok, "mmsi", check.reason)
    floats = {c: (pd.to_numeric(df[c], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
                  if c in df else np.full(n, np.nan)) for c in FLOAT_COLUMNS}
    lat, lon = floats["lat"], floats["lon"]
    with np.errstate(invalid="ignore"):
        reject(~np.isfinite(lat), "lat", "lat: missing or not a number")
        reject(~np.isfinite(lon), "lon", "lon: missing or not a number")
        reject(np.abs(lat) > 90, "lat", "lat: outside −90…90")
        reject(np.abs(lon) > 180, "lon", "lon: outside −180…180")
        reject((lat == 0) & (lon == 0), "lat", "lat/lon: 0/0 is not a position")
    if "time" in df:
        t = parse_times(df["time"], dayfirst)
        given = _text(df["time"]).str.strip().fillna("").to_numpy(dtype=object) != ""
        reject(t.isna().to_numpy() & given, "time", "time: cannot parse")
        reject((t > limit).fillna(False).to_numpy(bool), "time", "time: in the future")
    else:
        t = pd.Series(pd.NaT, index=df.index, dtype=UTC_NS)
    keep = np.flatnonzero(~bad)
    cols: dict[str, Any] = {"mmsi": np.asarray(mmsi[keep], dtype=np.int64),
                            "time": t.array[keep]}
    with np.errstate(invalid="ignore"):
        for c in FLOAT_COLUMNS:
            v = floats[c][keep]
            if c in ("heading", "cog"):  # ITU-R M.1371: 511 / 360 = not available
                v = angle_values(v)
            elif c == "sog":  # 102.3 = not available; 102.2 = "102.2 kn or more", kept
                v = sog_values(v)
            cols[c] = v
        for a, b, total in (("to_bow", "to_stern", "length"), ("to_port", "to_starboard",
                                                               "beam")):
            derived = cols[a] + cols[b]
            cols[total] = np.where(np.isfinite(cols[total]) & (cols[total] > 0), cols[total],
                                   np.where(derived > 0, derived, np.nan))
    sub = df.iloc[keep]
    cols["ship_type"] = (_ship_type_codes(sub["ship_type"]).array if "ship_type" in sub
                         else pd.array([pd.NA] * keep.size, dtype="Int64"))
    if "ship_name" in sub:
        name = _text(sub["ship_name"]).str.strip()
        cols["ship_name"] = name.mask(name == "").array
    else:
        cols["ship_name"] = pd.array([pd.NA] * keep.size, dtype=TEXT)
    cols["overpass_time"] = (parse_times(sub["overpass_time"], dayfirst).array
                             if "overpass_time" in sub
                             else pd.array(np.full(keep.size, np.datetime64("NaT", "ns")),
                                           dtype=UTC_NS))
    for c, default in (("source", source), ("provider", provider)):
        v = _text(sub[c]).str.strip() if c in sub else pd.Series(pd.NA, index=sub.index,
                                                                  dtype=TEXT)
        cols[c] = v.mask(v == "").fillna(default).array
    for c in OPTIONAL_COLUMNS:
        if c in sub:
            cols[c] = _optional(c, sub[c]).array
    return _Chunk(rows=rows[keep], columns=cols, rejects=rejects)


def _empty_points(extra: Sequence[str] = ()) -> pd.DataFrame:
    cols: dict[str, Any] = {"mmsi": np.zeros(0, np.int64),
                            "time": pd.array([], dtype=UTC_NS)}
    for c in POINT_COLUMNS[2:]:
        cols[c] = np.zeros(0, float) if c in FLOAT_COLUMNS else pd.array([], dtype=TEXT)
    cols["ship_type"] = pd.array([], dtype="Int64")
    cols["overpass_time"] = pd.array([], dtype=UTC_NS)
    for c in extra:
        cols[c] = pd.array([], dtype="Int64" if c == "imo" else TEXT)
    return pd.DataFrame(cols, index=pd.Index([], dtype=np.int64))


def _concat(parts: list[Any]) -> Any:
    """One column from every chunk (same dtype; text when the chunks disagree)."""
    arrays = [pd.Series(p, copy=False) for p in parts]
    if len({str(a.dtype) for a in arrays}) > 1:
        arrays = [a.astype(TEXT) for a in arrays]
    s = arrays[0] if len(arrays) == 1 else pd.concat(arrays, ignore_index=True)
    return s.array if isinstance(s.dtype, pd.api.extensions.ExtensionDtype) else s.to_numpy()


def _finish(chunks: list[_Chunk], header: Sequence[str]) -> AisTable:
    """Concatenate the chunks column by column (the chunk's copy freed as each column is
    done), drop duplicate fixes (same MMSI, time, lat, lon: the first row is kept) and sort
    by (mmsi, time) with NaT last."""
    rejects = [r for c in chunks for r in c.rejects]
    extra = [c for c in OPTIONAL_COLUMNS if c in header]
    rows = np.concatenate([c.rows for c in chunks]) if chunks else np.zeros(0, np.int64)
    if rows.size == 0:
        points = _empty_points(extra)
    else:
        mmsi = np.concatenate([c.columns["mmsi"] for c in chunks])
        t_ns = np.concatenate([np.asarray(c.columns["time"].asi8) for c in chunks])
        nat = t_ns == np.iinfo(np.int64).min
        order = np.lexsort((np.where(nat, np.iinfo(np.int64).max, t_ns), mmsi))  # stable
        ms, ts = mmsi[order], t_ns[order]
        same = (ms[1:] == ms[:-1]) & (ts[1:] == ts[:-1])
        dup = np.zeros(rows.size, bool)
        if same.any():  # only fixes sharing (mmsi, time) can be duplicates
            grp = np.zeros(rows.size, bool)
            grp[1:] |= same
            grp[:-1] |= same
            at = np.flatnonzero(grp)
            pos = order[at]
            lat = np.concatenate([c.columns["lat"] for c in chunks])[pos]
            lon = np.concatenate([c.columns["lon"] for c in chunks])[pos]
            d = pd.DataFrame({"m": ms[at], "t": ts[at], "la": lat, "lo": lon}).duplicated()
            dup[at[d.to_numpy()]] = True
        if dup.any():
            gone = order[dup]
            when = pd.DatetimeIndex(t_ns[gone].view("datetime64[ns]")).tz_localize("UTC")
            rejects.append(_reject_frame(rows[gone], mmsi[gone], "time",
                                         [str(x) for x in when], "duplicate fix"))
        take = order[~dup]
        del mmsi, t_ns, ms, ts
        cols: dict[str, Any] = {}
        for name in [*POINT_COLUMNS, *extra]:
            parts = [c.columns.pop(name, None) for c in chunks]
            if any(p is None for p in parts):  # an optional column some chunk lacked
                parts = [p if p is not None else pd.array([pd.NA] * c.rows.size, dtype=TEXT)
                         for p, c in zip(parts, chunks, strict=True)]
            full = _concat(parts)
            del parts
            cols[name] = full.take(take) if hasattr(full, "take") else full[take]
            del full
            release_free_memory()
        points = pd.DataFrame(cols, index=pd.Index(rows[take], dtype=np.int64), copy=False)
    rej = (pd.concat(rejects, ignore_index=True) if rejects
           else _reject_frame(np.zeros(0, np.int64), [], "", [],
                              np.zeros(0, dtype=object)).astype({"field": object}))
    rej = rej.sort_values("row", kind="stable").reset_index(drop=True)
    rej = rej.astype({"row": np.int64, "mmsi": "Int64", "value": TEXT})
    return AisTable(points=points, rejects=rej[REJECT_COLUMNS])


def _slices(df: pd.DataFrame, size: int) -> Iterator[pd.DataFrame]:
    for i in range(0, max(len(df), 1), size):
        yield df.iloc[i:i + size]


def normalize_chunks(chunks: Iterable[pd.DataFrame], *, source: str, provider: str = "file",
                     dayfirst: bool = False, now: pd.Timestamp | None = None,
                     header: Sequence[object] | None = None) -> AisTable:
    """:func:`normalize_points` over an input that arrives in chunks (consecutive rows of one
    table: row numbers in ``rejects`` count from the first row of the first chunk).
    ``header``: the input's column names, for the message when no chunk arrives."""
    limit = (now or pd.Timestamp.now(tz="UTC")) + pd.Timedelta(days=1)
    done: list[_Chunk] = []
    row0 = 0
    names: list[str] = []
    checked = False
    for raw in chunks:
        mapping = canonical_names(list(raw.columns))
        if not checked:
            names = list(mapping.values())
            _require(names, header if header is not None else list(raw.columns), source)
            checked = True
        df = raw.rename(columns=mapping)
        if not isinstance(df.index, pd.RangeIndex):  # positions are used, labels must be unique
            df = df.reset_index(drop=True)
        done.append(_validate(df, row0, source=source, provider=provider, dayfirst=dayfirst,
                              limit=limit))
        row0 += len(df)
        del raw, df
        release_free_memory()
    if not checked:
        names = list(canonical_names(list(header or [])).values())
        _require(names, list(header or []), source)
    return _finish(done, names)


def _require(names: Sequence[str], header: Sequence[object], source: str) -> None:
    missing = [c for c in ("mmsi", "lat", "lon") if c not in names]
    if missing:
        raise InputError(f"AIS table {source}: required column(s) {missing} not found (have "
                         f"{list(header)[:12]}); name them mmsi, lat, lon (or MMSI, "
                         "LAT, LON / Latitude, Longitude)")


def normalize_points(raw: pd.DataFrame, *, source: str, provider: str = "file",
                     dayfirst: bool = False, now: pd.Timestamp | None = None) -> AisTable:
    """Canonicalise columns, coerce types and validate every row.

    Raises ``InputError`` only when a required column (mmsi, lat, lon) is missing; each bad
    row goes to ``rejects`` with the field and reason: an MMSI that is not a valid ITU-R
    M.585 identity (:mod:`s2xr.ais.mmsi`), lat/lon missing, out of range or 0/0, an
    unparseable or future time (:func:`~s2xr.ais.fixtime.parse_times`), a duplicate fix.
    """
    return normalize_chunks(_slices(raw, CHUNK_ROWS), source=source, provider=provider,
                            dayfirst=dayfirst, now=now, header=list(raw.columns))
