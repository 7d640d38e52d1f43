"""AIS file sources: CSV, Excel, Parquet, NMEA (AIVDM via pyais), aisstream JSONL, and the
``ais_observations`` table of an SQLite ops DB.

Common public layouts are recognised by their column names: MarineCadastre
(``MMSI, BaseDateTime, LAT, LON, SOG, COG, Heading, VesselName, VesselType, Length,
Width``), the Danish Maritime Authority (``# Timestamp, Type of mobile, MMSI, Latitude,
Longitude, ..., Ship type, ..., Width, Length`` with day-first times) and aisdb's CSV
(``MMSI, Message_ID, ..., Time, ...`` with times like ``20210701_185151``, UTC; one row per
AIS message: position reports (types 1-3, 18, 19, 27) are the points, static reports (5, 24)
fill their ship's name, type and dimensions, other types are skipped). The predecessor's
formats: its upload (``mmsi, lat, lon, overpass_time``), its snapshots and its ``ops.db``
(``captured_time`` is the fix's time).
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from s2xr.ais.fixtime import parse_times
from s2xr.ais.frames import POSITION_ROW_COLUMNS, FrameParser
from s2xr.ais.normalize import normalize_chunks, normalize_points
from s2xr.ais.schema import (
    CHUNK_ROWS,
    REJECT_COLUMNS,
    TEXT,
    AisTable,
    canonical_names,
    ignored_aliases,
)
from s2xr.ais.tracks import join_static, static_table
from s2xr.errors import InputError
from s2xr.memory import release_free_memory

log = logging.getLogger(__name__)

# canonical columns a CSV reader keeps as text (validated or parsed as written)
TEXT_COLUMNS = ("mmsi", "time", "overpass_time", "ship_name", "source", "provider", "tile_id",
                "call_sign", "message_type")
POSITION_TYPES = (1, 2, 3, 18, 19, 27)  # AIS message types that are position reports
STATIC_TYPES = (5, 19, 24)  # ... and those that carry name, type and dimensions
SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")
OPS_DB_TABLE = "ais_observations"  # the predecessor's ops.db (and s2xr's ops DB before v4)
# aisdb's compact UTC times: 20210701_185151 (also 20210701T185151Z)
_COMPACT_TIME = r"^\s*(\d{4})(\d{2})(\d{2})[_T](\d{2})(\d{2})(\d{2})Z?\s*$"


def read_aisstream_jsonl(path: Path, *, provider: str = "aisstream"
                        ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(positions joined with static data, rejects) from aisstream frames, one per line.

    Frames of other message types (base stations, aids to navigation, ...) are skipped
    without being rejects; malformed frames, bad MMSIs, invalid positions and duplicates
    become rejects (row = line number, field "message")."""
    parser = FrameParser(provider=provider, max_future_s=86_400.0)
    positions, statics, rejects = [], [], []
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    lines = text.splitlines()
    if text.lstrip().startswith(("[", "{")) and len(lines) > 1:
        try:  # one JSON document: a frame or a list of frames (e.g. a pretty-printed .json)
            doc = json.loads(text)
            lines = [json.dumps(f) for f in (doc if isinstance(doc, list) else [doc])]
        except json.JSONDecodeError:
            pass  # JSON lines
    for lineno, line in enumerate(lines):
        if not line.strip():
            continue
        parsed = parser.parse(line)
        if parsed is None:
            if parser.last_skip != "other_type":
                rejects.append({"row": lineno, "mmsi": None, "field": "message",
                                "value": line.strip()[:80],
                                "reason": f"aisstream frame: {parser.last_skip}"})
        elif parsed.kind == "position":
            positions.append(parsed.row)
        elif parsed.kind == "static":
            statics.append(parsed.row)
    pos = pd.DataFrame(positions, columns=POSITION_ROW_COLUMNS)
    pos = join_static(pos, static_table(statics))
    pos["provider"] = pos["provider"].fillna(provider) if len(pos) else provider
    return pos, pd.DataFrame(rejects, columns=["row", "mmsi", "field", "value", "reason"])


def _nmea_time(msg: object) -> pd.Timestamp:
    tb = getattr(msg, "tag_block", None)
    if tb is None:
        return pd.NaT
    tb.init()
    if not tb.receiver_timestamp:
        return pd.NaT
    ts = float(tb.receiver_timestamp)
    return pd.Timestamp(ts / (1000 if ts > 1e11 else 1), unit="s", tz="UTC")


def read_nmea(path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Positions (types 1–3, 18, 19, 27) joined with static data (5, 19, 24) from AIVDM lines.

    Multi-part messages are assembled by pyais; tag-block ``c:`` (receiver time, s or ms)
    gives the time, else time is NaT. Sentences with a wrong checksum, an empty payload or an
    undecodable body are rejects (row = message number, field "message")."""
    from pyais.messages import MessageType1, MessageType18, MessageType19, MessageType27
    from pyais.stream import FileReaderStream

    # position reports: types 1-3 (2 and 3 are MessageType1 subclasses), 18, 19, 27
    position_types = (MessageType1, MessageType18, MessageType19, MessageType27)

    positions, statics, rejects = [], [], []
    with FileReaderStream(str(path)) as stream:
        messages = list(stream)
    for n, msg in enumerate(messages):
        raw = msg.raw.decode("ascii", "replace").strip() if isinstance(msg.raw, bytes) \
            else str(msg.raw)
        if not getattr(msg, "is_valid", True):
            rejects.append({"row": n, "mmsi": None, "field": "message", "value": raw[:80],
                            "reason": "NMEA checksum mismatch"})
            continue
        try:
            dec = msg.decode()
        except Exception as exc:  # pyais raises several types for broken payloads
            rejects.append({"row": n, "mmsi": None, "field": "message", "value": raw[:80],
                            "reason": f"undecodable AIVDM: {type(exc).__name__}"})
            continue
        t = _nmea_time(msg)
        mtype = dec.msg_type
        if isinstance(dec, position_types):
            positions.append({"mmsi": int(dec.mmsi), "time": t, "lat": dec.lat, "lon": dec.lon,
                              "sog": getattr(dec, "speed", None),
                              "cog": getattr(dec, "course", None),
                              "heading": getattr(dec, "heading", None)})
        if mtype in (5, 19, 24):
            row = {"mmsi": int(dec.mmsi), "time": t}
            for src, dst in (("shipname", "ship_name"), ("ship_type", "ship_type"),
                             ("to_bow", "to_bow"), ("to_stern", "to_stern"),
                             ("to_port", "to_port"), ("to_starboard", "to_starboard"),
                             ("callsign", "call_sign"), ("imo", "imo")):
                v = getattr(dec, src, None)
                if v is not None and v != "":
                    row[dst] = int(v) if hasattr(v, "value") else v
            statics.append(row)
    pos = pd.DataFrame(positions, columns=["mmsi", "time", "lat", "lon", "sog", "cog",
                                           "heading"])
    pos["time"] = pd.to_datetime(pos["time"], utc=True)
    pos = join_static(pos, static_table(statics))
    pos["provider"] = "nmea"
    return pos, pd.DataFrame(rejects, columns=["row", "mmsi", "field", "value", "reason"])


def _csv_chunks(path: Path, chunk_rows: int) -> tuple[list[str], Iterator[pd.DataFrame], bool]:
    """(header, chunks of the recognised columns, day-first?) of a CSV file. MMSI, time and
    the text columns are read as text, so an MMSI is validated as written ("2.35e8" is not
    235000000)."""
    with path.open(encoding="utf-8", errors="replace") as fh:
        head = fh.readline()
    dayfirst = "# Timestamp" in head or "Type of mobile" in head  # DMA layout
    header = list(pd.read_csv(path, nrows=0, encoding_errors="replace").columns)
    names = canonical_names(header)
    text = {col for col, name in names.items() if name in TEXT_COLUMNS}
    reader = pd.read_csv(path, usecols=list(names), chunksize=chunk_rows,
                         dtype={c: str for c in text}, encoding_errors="replace",
                         low_memory=False)

    def chunks() -> Iterator[pd.DataFrame]:
        with reader:
            yield from reader

    return header, chunks(), dayfirst


def _iso_compact(values: pd.Series) -> pd.Series:
    """aisdb's compact UTC times (``20210701_185151``) as ISO 8601 (``2021-07-01T18:51:51Z``),
    when the first value is one; other columns are returned unchanged."""
    first = values.dropna()
    if first.empty or not isinstance(first.iloc[0], str) or not pd.Series(
            first.iloc[:1]).str.match(_COMPACT_TIME).iloc[0]:
        return values
    return values.str.replace(_COMPACT_TIME, r"\1-\2-\3T\4:\5:\6Z", regex=True)


class _MessageSplit:
    """The chunks of a table with one row per AIS message (a numeric message type column,
    aisdb's ``Message_ID``): rows of position reports go on, rows of static reports are set
    aside and joined to their ship's points afterwards (:meth:`finish`), other types are
    skipped. Compact times are made ISO 8601. The file row number of each row passed on is
    kept, so rejects and point indices still count the file's rows."""

    def __init__(self, chunks: Iterable[pd.DataFrame], header: list[str]) -> None:
        names = {v: k for k, v in canonical_names(header).items()}
        self._chunks = chunks
        self._type, self._time = names.get("message_type"), names.get("time")
        self.static: list[pd.DataFrame] = []
        self.kept: list[np.ndarray | slice] = []  # per chunk: the rows passed on
        self.split = False

    def __iter__(self) -> Iterator[pd.DataFrame]:
        row0 = 0
        for chunk in self._chunks:
            if self._time is not None and self._time in chunk:
                chunk[self._time] = _iso_compact(chunk[self._time])
            keep = np.ones(len(chunk), bool)
            if self._type is not None and self._type in chunk:
                mt = pd.to_numeric(chunk[self._type], errors="coerce")
                if mt.notna().any():
                    self.split = True
                    static = mt.isin(STATIC_TYPES).to_numpy()
                    if static.any():
                        self.static.append(chunk.loc[static])
                    keep = (mt.isin(POSITION_TYPES) | mt.isna()).to_numpy()
            whole = bool(keep.all())
            self.kept.append(slice(row0, row0 + len(chunk)) if whole
                             else row0 + np.flatnonzero(keep))
            row0 += len(chunk)
            yield chunk if whole else chunk.loc[keep]

    def finish(self, table: AisTable) -> AisTable:
        """``table`` with the file's row numbers and the static reports joined."""
        if not self.split:
            return table
        rows = np.concatenate([np.arange(k.start, k.stop) if isinstance(k, slice) else k
                               for k in self.kept])
        points = table.points.set_axis(pd.Index(rows[table.points.index.to_numpy()]))
        rejects = table.rejects.assign(row=rows[table.rejects["row"].to_numpy()])
        if self.static:
            st = pd.concat(self.static)
            st = st.rename(columns=canonical_names(list(st.columns)))
            st["mmsi"] = pd.to_numeric(st["mmsi"], errors="coerce")
            st = st.loc[st["mmsi"].between(1, 999_999_999)].astype({"mmsi": np.int64})
            if "time" in st:
                st["time"] = parse_times(st["time"])
            if "ship_type" in st:
                code = pd.to_numeric(st["ship_type"], errors="coerce")
                st["ship_type"] = code.where((code > 0) & (code < 100))
            if "ship_name" in st:
                st["ship_name"] = st["ship_name"].astype(TEXT).str.strip()
            joined = join_static(points, static_table(st))
            points = joined.astype({c: points[c].dtype for c in points.columns})
        return AisTable(points, rejects)


def _sqlite_chunks(path: Path, chunk_rows: int) -> tuple[list[str], Iterator[pd.DataFrame]]:
    """(header, chunks of the recognised columns) of the table ``ais_observations`` of an
    SQLite database (the predecessor's ``ops.db``), opened read-only. Raises ``InputError``
    when the file is not an SQLite database or has no such table."""
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        tables = [str(r[0]) for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        if OPS_DB_TABLE not in tables:
            raise InputError(
                f"AIS file {path}: an SQLite database without a table {OPS_DB_TABLE!r} "
                f"(its tables: {', '.join(tables) or 'none'}); s2xr reads AIS points from "
                f"the {OPS_DB_TABLE} table of the predecessor's ops.db; export other tables "
                "to CSV with columns mmsi, lat, lon, time")
        header = [str(r[1]) for r in conn.execute(f"PRAGMA table_info({OPS_DB_TABLE})")]
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise InputError(f"AIS file {path}: not a readable SQLite database ({exc})") from None
    except BaseException:
        conn.close()
        raise
    cols = ", ".join('"' + str(c).replace('"', '""') + '"' for c in canonical_names(header))
    query = f"SELECT {cols} FROM {OPS_DB_TABLE}"  # column names come from the schema

    def chunks() -> Iterator[pd.DataFrame]:
        try:
            yield from pd.read_sql_query(query, conn, chunksize=chunk_rows)
        finally:
            conn.close()

    return header, chunks()


def _is_sqlite(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(16) == b"SQLite format 3\x00"


def _parquet_chunks(path: Path, chunk_rows: int) -> tuple[list[str], Iterator[pd.DataFrame]]:
    """(header, record batches of the recognised columns as DataFrames) of a Parquet file."""
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    header = list(pf.schema_arrow.names)
    cols = list(canonical_names(header))

    def chunks() -> Iterator[pd.DataFrame]:
        for batch in pf.iter_batches(batch_size=chunk_rows, columns=cols):
            yield batch.to_pandas()

    return header, chunks()


def read_ais_table(source: str | Path | pd.DataFrame, *, provider: str | None = None,
                   chunk_rows: int = CHUNK_ROWS) -> AisTable:
    """Read and validate AIS points from a file or DataFrame → :class:`AisTable`.

    Formats by extension: .csv, .xlsx/.xls, .parquet, .nmea/.txt/.ais (AIVDM), .jsonl/.json
    (aisstream frames), an SQLite database (.db/.sqlite/.sqlite3, or told by its header: the
    table ``ais_observations`` of the predecessor's ``ops.db``). Bad rows are recorded in
    ``rejects`` and skipped; an unreadable file or a missing required column raises
    ``InputError``.

    CSV, Parquet and SQLite sources are streamed: ``chunk_rows`` rows (Parquet: record batches) are
    read, validated and shrunk to the compact point dtypes at a time, and only the
    recognised columns are read, so memory stays near the size of the valid points (about
    130 bytes each) whatever the file's size. Row numbers in ``rejects`` count from the
    file's first data row.
    """
    if isinstance(source, pd.DataFrame):
        return normalize_points(source, source="<DataFrame>", provider=provider or "dataframe")
    path = Path(source)
    if not path.is_file():
        raise InputError(f"AIS file {path} does not exist")
    suffix = path.suffix.lower()
    extra_rejects = pd.DataFrame()
    name = path.name
    try:
        if suffix in (".csv", ".parquet") or suffix in SQLITE_SUFFIXES or _is_sqlite(path):
            dayfirst = False
            if suffix == ".csv":
                header, chunks, dayfirst = _csv_chunks(path, chunk_rows)
            elif suffix == ".parquet":
                header, chunks = _parquet_chunks(path, chunk_rows)
            else:
                header, chunks = _sqlite_chunks(path, chunk_rows)
            split = _MessageSplit(chunks, header)
            table = split.finish(normalize_chunks(split, source=name, provider=provider or
                                                  "file", dayfirst=dayfirst, header=header))
            for col, used in ignored_aliases(header).items():
                log.info("%s: column %r not read: %r gives the same field", name, col, used)
        else:
            if suffix in (".xlsx", ".xls"):
                raw = pd.read_excel(path)
            elif suffix in (".nmea", ".txt", ".ais"):
                raw, extra_rejects = read_nmea(path)
            elif suffix in (".jsonl", ".json", ".ndjson"):
                raw, extra_rejects = read_aisstream_jsonl(path)
            else:
                raise InputError(f"AIS file {path}: unknown format {suffix!r}; use .csv, "
                                 ".xlsx, .parquet, .nmea, .jsonl or an ops.db")
            table = normalize_points(raw, source=name, provider=provider or (
                str(raw["provider"].iloc[0]) if "provider" in raw and len(raw) else "file"))
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"AIS file {path} cannot be read: {exc}") from exc
    if len(extra_rejects):
        extra = extra_rejects.astype({"row": "int64", "mmsi": "Int64", "value": TEXT})
        rej = pd.concat([extra, table.rejects], ignore_index=True)
        table = AisTable(table.points, rej[REJECT_COLUMNS])
    release_free_memory()
    log.info("read %s: %d valid point(s), %d rejected", path.name, len(table.points),
             len(table.rejects))
    return table
