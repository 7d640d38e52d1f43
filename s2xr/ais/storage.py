"""Where captured AIS goes. Everything is merged, never overwritten, and written to a temporary
file then renamed (nothing half-written).

Layout under the output directory (``YYYYMMDD`` = UTC day of the fix, or of receipt for raw
frames)::

    ais/YYYYMMDD/aisstream_raw.jsonl              every frame received, appended (audit, replay)
    ais/YYYYMMDD/ais_overpass_{tile_id}.parquet   positions inside that tile (+ .xlsx on request)
    ais/YYYYMMDD/ais_outside_tiles.parquet        positions in none of the (active) tiles
    ais/YYYYMMDD/ais_static.parquet               static records (ShipStaticData, StaticDataReport)
    ais/YYYYMMDD/ais_random_sample.parquet        random sample of distinct MMSIs (sampling.py)
    indexes/ais_observations.parquet              every stored position exactly once

Position columns: mmsi (int64), time (datetime64[ns, UTC]), lat, lon, sog, cog, heading
(float64), nav_status (Int64), message_type, ship_name (string), ship_type (Int64), to_bow,
to_stern, to_port, to_starboard, length, beam (float64), call_sign (string), imo (Int64),
tile_id (string; the first active tile containing the fix, or <NA>), provider, source
(string). Static columns: see :data:`s2xr.ais.frames.STATIC_ROW_COLUMNS` + source.
Positions are keyed by (mmsi, time, lat, lon), static records by (mmsi, time, message_type,
part): a record already stored is never stored again.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd

from s2xr.ais.frames import STATIC_ROW_COLUMNS
from s2xr.ais.normalize import normalize_points
from s2xr.ais.schema import AisTable
from s2xr.ais.tracks import join_static, static_table
from s2xr.errors import StorageError
from s2xr.store.layout import DatasetLayout, atomic_write, file_lock

log = logging.getLogger(__name__)

POSITION_COLUMNS = ["mmsi", "time", "lat", "lon", "sog", "cog", "heading", "nav_status",
                    "message_type", "ship_name", "ship_type", "to_bow", "to_stern", "to_port",
                    "to_starboard", "length", "beam", "call_sign", "imo", "tile_id",
                    "provider", "source"]
POSITION_KEY = ["mmsi", "time", "lat", "lon"]
STATIC_KEY = ["mmsi", "time", "message_type", "part"]
INDEX_PATH = DatasetLayout(Path()).ais_observations  # relative to the root
RAW_NAME = DatasetLayout.AIS_RAW
OUTSIDE_NAME = DatasetLayout.AIS_OUTSIDE
STATIC_NAME = DatasetLayout.AIS_STATIC
SAMPLE_NAME = DatasetLayout.AIS_SAMPLE
_FLOAT = ("lat", "lon", "sog", "cog", "heading", "to_bow", "to_stern", "to_port",
          "to_starboard", "length", "beam")
_INT = ("nav_status", "ship_type", "imo")
_STR = ("message_type", "ship_name", "call_sign", "tile_id", "provider", "source", "part",
        "destination")
_SURROGATE = r"[\ud800-\udfff]"  # a lone surrogate (JSON "\ud800") cannot be written as UTF-8
# characters str.splitlines() breaks lines at, besides \r and \n: escaped in the raw log so that
# every frame stays on one line (inside a JSON string the escape means the same character)
_LINE_BREAKS = {c: f"\\u{ord(c):04x}" for c in "\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"}
_LINE_BREAKS.update({"\r": " ", "\n": " "})
_RAW_LINE = str.maketrans(_LINE_BREAKS)


def day_dir(root: Path, day: pd.Timestamp | str) -> Path:
    """``root/ais/YYYYMMDD`` for a UTC day."""
    d = pd.Timestamp(day)
    d = d.tz_convert("UTC") if d.tzinfo else d
    return DatasetLayout(Path(root)).ais_day(d)


def writable_text(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with lone surrogates in its text columns replaced by U+FFFD (they come from
    JSON escapes such as ``"\\ud800"`` in a ship name and would fail the parquet write)."""
    out = df
    for c in df.columns:
        if df[c].dtype == object or isinstance(df[c].dtype, pd.StringDtype):
            col = df[c]
            bad = col.map(lambda v: isinstance(v, str) and not v.isascii()
                          and re.search(_SURROGATE, v) is not None).astype(bool)
            if bad.any():
                out = out.copy() if out is df else out
                out.loc[bad, c] = col[bad].str.replace(_SURROGATE, "\ufffd", regex=True)
    return out


def coerce(df: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """The stored dtypes for ``columns`` (missing columns added empty), in that order."""
    out = df.copy()
    for c in columns:
        if c not in out:
            out[c] = pd.NA
        if c == "mmsi":
            out[c] = pd.to_numeric(out[c]).astype("int64")
        elif c == "time":
            out[c] = pd.to_datetime(out[c], utc=True).astype("datetime64[ns, UTC]")
        elif c in _FLOAT:
            out[c] = pd.to_numeric(out[c], errors="coerce").astype("float64")
        elif c in _INT:
            out[c] = pd.to_numeric(out[c], errors="coerce").astype("Int64")
        elif c in _STR:
            out[c] = out[c].astype("string")
    return out[columns]


def atomic_parquet(df: pd.DataFrame, path: Path) -> None:
    """Write ``df`` to ``path`` via a temporary file and a rename."""
    try:
        atomic_write(path, lambda p: df.to_parquet(p, index=False))
    except OSError as exc:
        raise StorageError(f"cannot write {path}: {exc}") from exc


def atomic_xlsx(df: pd.DataFrame, path: Path) -> None:
    """Excel copy (times written as naive UTC: Excel has no time zones), temp + rename."""
    out = df.copy()
    for c in out.columns:
        if isinstance(out[c].dtype, pd.DatetimeTZDtype):
            out[c] = out[c].dt.tz_localize(None)
    try:
        atomic_write(path, lambda p: out.to_excel(p, index=False, engine="openpyxl"))
    except OSError as exc:
        raise StorageError(f"cannot write {path}: {exc}") from exc


def merge_parquet(path: Path, new: pd.DataFrame, key: list[str], columns: list[str],
                  *, xlsx: bool = False) -> int:
    """Merge ``new`` rows into the parquet file at ``path`` (created if absent): rows whose
    ``key`` is already stored are dropped, the rest appended, sorted by (mmsi, time).
    Returns the number of rows added."""
    new = coerce(new, columns)
    if path.exists():
        try:
            old = coerce(pd.read_parquet(path), columns)
        except Exception as exc:
            raise StorageError(f"{path} exists but cannot be read ({exc}); move it away "
                               "before capturing into this directory again") from exc
    else:
        old = new.iloc[:0]
    both = pd.concat([old, new], ignore_index=True) if len(old) else new
    both = both.loc[~both.duplicated(key, keep="first")]
    added = len(both) - len(old)
    if added == 0 and path.exists():
        return 0
    both = both.sort_values(["mmsi", "time"], kind="stable").reset_index(drop=True)
    atomic_parquet(both, path)
    if xlsx:
        atomic_xlsx(both, path.with_suffix(".xlsx"))
    return added


def assign_tiles(lat: np.ndarray, lon: np.ndarray, active: Collection[str] | None
                 ) -> list[list[str]]:
    """For each fix, the tiles containing it (only the ``active`` ones when given)."""
    from s2xr.grid import tiles_at_many

    tiles = tiles_at_many(np.asarray(lon, float), np.asarray(lat, float))
    if active is None:
        return tiles
    keep = set(active)
    return [[t for t in ts if t in keep] for ts in tiles]


class RawWriter:
    """Appends raw frames, one per line, to ``ais/YYYYMMDD/aisstream_raw.jsonl`` (UTC day of
    receipt). Call :meth:`flush` to push buffered lines to disk, :meth:`close` at the end."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._day: str | None = None
        self._fh: IO[str] | None = None
        self.lines = 0

    def write(self, text: str | bytes, received: pd.Timestamp) -> None:
        """Append one frame, always as one line: \\r and \\n are replaced by spaces, the other
        line breaks (U+2028, U+0085, ...) by JSON escapes (valid JSON stays valid and means
        the same); lone surrogates are written as ``\\udXXX`` escapes."""
        day = received.strftime("%Y%m%d")
        if day != self._day or self._fh is None:
            self.close()
            path = DatasetLayout(self.root).ais_day(day) / RAW_NAME
            path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(path, "a", encoding="utf-8",  # noqa: SIM115 (kept open)
                            errors="backslashreplace")
            self._day = day
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        self._fh.write(text.translate(_RAW_LINE) + "\n")
        self.lines += 1

    def flush(self) -> None:
        """Flush buffered lines to the operating system."""
        if self._fh is not None:
            self._fh.flush()

    def close(self) -> None:
        """Flush and close the current file."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None


class AisStore:
    """Writes parsed AIS rows under ``root`` (layout in the module docstring).

    ``xlsx``: also write ``.xlsx`` copies of the per-tile overpass files. ``source``: the
    value of the ``source`` column (e.g. "aisstream", or the replay URL's host).
    """

    def __init__(self, root: str | Path, *, xlsx: bool = False, source: str = "aisstream"
                 ) -> None:
        self.root = Path(root)
        self.xlsx = xlsx
        self.source = source
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create output directory {self.root}: {exc}") from exc
        self.raw = RawWriter(self.root)
        self.positions_written = 0
        self.static_written = 0

    @property
    def index_path(self) -> Path:
        """``indexes/ais_observations.parquet``."""
        return self.root / INDEX_PATH

    def write_static(self, rows: pd.DataFrame | list[dict]) -> int:
        """Merge static records into ``ais/YYYYMMDD/ais_static.parquet``; returns rows added."""
        df = writable_text(pd.DataFrame(rows))
        if df.empty:
            return 0
        df["source"] = self.source
        cols = [*STATIC_ROW_COLUMNS, "source"]
        df = coerce(df, cols)
        added = 0
        for day, part in df.groupby(df["time"].dt.strftime("%Y%m%d")):
            added += merge_parquet(DatasetLayout(self.root).ais_day(day) / STATIC_NAME, part,
                                   STATIC_KEY,
                                   cols)
        self.static_written += added
        return added

    def write_positions(self, rows: pd.DataFrame | list[dict], *,
                        static: pd.DataFrame | None = None,
                        tiles: Collection[str] | None = None) -> int:
        """Merge positions (joined with ``static``, indexed by mmsi) into the per-tile
        overpass files of their day and into the index; ``tiles`` restricts the overpass files
        to those tiles (fixes in none of them go to ``ais_outside_tiles.parquet``).
        Returns the number of positions added to the index."""
        df = pd.DataFrame(rows)
        if df.empty:
            return 0
        if static is not None and len(static):
            df = join_static(df, static)
        df = writable_text(df)
        df["source"] = self.source
        df = coerce(df, POSITION_COLUMNS)
        hits = assign_tiles(df["lat"].to_numpy(), df["lon"].to_numpy(), tiles)
        df["tile_id"] = pd.array([h[0] if h else pd.NA for h in hits], dtype="string")
        with file_lock(self.index_path):  # chip jobs merge their fixes into it too
            added = merge_parquet(self.index_path, df, POSITION_KEY, POSITION_COLUMNS)
        days = df["time"].dt.strftime("%Y%m%d").to_numpy()
        per_file: dict[tuple[str, str | None], list[int]] = {}
        for i, (day, hs) in enumerate(zip(days, hits, strict=True)):
            in_tiles: list[str | None] = list(hs) if hs else [None]
            for t in in_tiles:
                per_file.setdefault((day, t), []).append(i)
        for (day, tile), idx in sorted(per_file.items(), key=lambda kv: (kv[0][0],
                                                                          kv[0][1] or "")):
            merge_parquet(DatasetLayout(self.root).ais_overpass(day, tile), df.iloc[idx],
                          POSITION_KEY, POSITION_COLUMNS, xlsx=self.xlsx and tile is not None)
        self.positions_written += added
        return added

    def close(self) -> None:
        """Close the raw JSONL file."""
        self.raw.close()


def overpass_files(root: str | Path, day: str | pd.Timestamp | None = None) -> list[Path]:
    """The per-tile overpass parquet files (of one UTC day, or all)."""
    base = DatasetLayout(Path(root)).ais
    name = DatasetLayout.AIS_OVERPASS.format(tile="*")
    pattern = f"{day_dir(Path(root), day).name}/{name}" if day is not None else f"*/{name}"
    return sorted(base.glob(pattern))


def read_capture(root: str | Path, days: Iterable[str | pd.Timestamp] | None = None
                 ) -> AisTable:
    """Captured positions (from the index) joined with the captured static records → a
    validated :class:`~s2xr.ais.schema.AisTable` for the chip pipeline."""
    root = Path(root)
    idx_path = root / INDEX_PATH
    if not idx_path.exists():
        raise StorageError(f"no AIS capture under {root} ({INDEX_PATH} missing); run "
                           "`s2xr collect-ais` first")
    pos = pd.read_parquet(idx_path)
    if days is not None:
        keep = {day_dir(root, d).name for d in days}
        pos = pos.loc[pos["time"].dt.strftime("%Y%m%d").isin(keep)]
    statics = [pd.read_parquet(p) for p in
               sorted(DatasetLayout(root).ais.glob(f"*/{STATIC_NAME}"))]
    if statics:
        pos = join_static(pos, static_table(pd.concat(statics, ignore_index=True)))
    provider = str(pos["provider"].iloc[0]) if len(pos) else "aisstream"
    return normalize_points(pos, source=str(idx_path.name), provider=provider)
