"""AIS file sources: CSV, Excel, Parquet, NMEA (AIVDM via pyais), aisstream JSONL.

Common public layouts are recognised by their column names: MarineCadastre
(``MMSI, BaseDateTime, LAT, LON, SOG, COG, Heading, VesselName, VesselType, Length,
Width``) and the Danish Maritime Authority (``# Timestamp, Type of mobile, MMSI, Latitude,
Longitude, ..., Ship type, ..., Width, Length`` with day-first times).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from s2xr.ais.schema import AisTable, normalize_points
from s2xr.errors import InputError

log = logging.getLogger(__name__)

POSITION_TYPES = ("PositionReport", "StandardClassBPositionReport",
                  "ExtendedClassBPositionReport")
STATIC_TYPES = ("ShipStaticData", "StaticDataReport")


def parse_aisstream_time(value: str) -> pd.Timestamp:
    """aisstream's Go time "2024-09-17 14:38:55.281038479 +0000 UTC" → UTC Timestamp (ns)."""
    return pd.Timestamp(str(value).replace(" +0000 UTC", "").strip(), tz="UTC")


def parse_aisstream_message(frame: dict[str, Any]) -> tuple[str, dict[str, Any] | None]:
    """One aisstream frame → ("position"|"static"|"other", row). Raises KeyError/ValueError
    on malformed frames (callers count and skip them)."""
    mtype = frame["MessageType"]
    meta = frame["MetaData"]
    body = frame["Message"][mtype]
    mmsi = int(meta["MMSI"])
    name = str(meta.get("ShipName") or "").strip() or None
    if mtype in POSITION_TYPES:
        row = {"mmsi": mmsi, "time": parse_aisstream_time(meta["time_utc"]),
               "lat": float(body["Latitude"]), "lon": float(body["Longitude"]),
               "sog": body.get("Sog"), "cog": body.get("Cog"),
               "heading": body.get("TrueHeading"), "ship_name": name}
        if mtype == "ExtendedClassBPositionReport":
            row.update(_dimensions(body.get("Dimension")), ship_type=body.get("Type"))
        return "position", row
    if mtype in STATIC_TYPES:
        if mtype == "ShipStaticData":
            row = {"mmsi": mmsi, "ship_type": body.get("Type"),
                   "ship_name": str(body.get("Name") or "").strip() or name,
                   "call_sign": str(body.get("CallSign") or "").strip() or None,
                   "imo": body.get("ImoNumber") or None, **_dimensions(body.get("Dimension"))}
        else:
            a, b = body.get("ReportA") or {}, body.get("ReportB") or {}
            row = {"mmsi": mmsi, "ship_name": (str(a.get("Name") or "").strip() or name)
                   if a.get("Valid", True) else name,
                   "ship_type": b.get("ShipType") if b.get("Valid", True) else None,
                   "call_sign": str(b.get("CallSign") or "").strip() or None,
                   **(_dimensions(b.get("Dimension")) if b.get("Valid", True) else {})}
        row["time"] = parse_aisstream_time(meta["time_utc"])
        return "static", row
    return "other", None


def _dimensions(d: dict[str, Any] | None) -> dict[str, float]:
    if not d:
        return {}
    a, b, c, e = (float(d.get(k, 0) or 0) for k in "ABCD")
    out = {"to_bow": a, "to_stern": b, "to_port": c, "to_starboard": e}
    return {k: (v if v > 0 else np.nan) for k, v in out.items()}


def static_table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Latest static data per MMSI: ship_type, length = A+B, beam = C+D, name, call sign."""
    if not rows:
        return pd.DataFrame(columns=["ship_type", "ship_name", "to_bow", "to_stern", "to_port",
                                     "to_starboard", "length", "beam"]).rename_axis("mmsi")
    st = pd.DataFrame(rows).sort_values("time").groupby("mmsi").last()
    for c in ("to_bow", "to_stern", "to_port", "to_starboard"):
        if c not in st:
            st[c] = np.nan
    st["length"] = st["to_bow"] + st["to_stern"]
    st["beam"] = st["to_port"] + st["to_starboard"]
    return st.drop(columns=["time"])


def join_static(positions: pd.DataFrame, static: pd.DataFrame) -> pd.DataFrame:
    """Fill positions' static columns (type, dimensions, name) from per-MMSI static data;
    values already in ``positions`` win."""
    out = positions.copy()
    for col in ("ship_type", "ship_name", "to_bow", "to_stern", "to_port", "to_starboard",
                "length", "beam", "call_sign", "imo"):
        if col not in static:
            continue
        fill = out["mmsi"].map(static[col])
        out[col] = out[col].where(out[col].notna(), fill) if col in out else fill
    return out


def read_aisstream_jsonl(path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(positions joined with static data, rejects) from aisstream frames, one per line."""
    positions, statics, rejects = [], [], []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f):
            if not line.strip():
                continue
            try:
                kind, row = parse_aisstream_message(json.loads(line))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                rejects.append({"row": lineno, "mmsi": None, "field": "message",
                                "value": line[:80], "reason": f"malformed frame: {exc!r}"})
                continue
            if kind == "position":
                positions.append(row)
            elif kind == "static":
                statics.append(row)
    pos = pd.DataFrame(positions, columns=["mmsi", "time", "lat", "lon", "sog", "cog",
                                           "heading", "ship_name"] if not positions else None)
    pos = join_static(pos, static_table(statics))
    pos["provider"] = "aisstream"
    return pos, pd.DataFrame(rejects)


def read_nmea(path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Positions (types 1–3, 18, 19, 27) joined with static data (5, 24) from AIVDM lines.
    Multi-part messages are assembled by pyais; tag-block ``c:`` timestamps give times."""
    from pyais.stream import FileReaderStream

    positions, statics, rejects = [], [], []
    for n, msg in enumerate(FileReaderStream(str(path))):
        try:
            dec = msg.decode()
        except Exception as exc:  # pyais raises several types for broken payloads
            rejects.append({"row": n, "mmsi": None, "field": "message",
                            "value": str(msg.raw)[:80], "reason": f"undecodable: {exc}"})
            continue
        t = pd.NaT
        tb = getattr(msg, "tag_block", None)
        if tb is not None:
            tb.init()
            if tb.receiver_timestamp:
                ts = float(tb.receiver_timestamp)
                t = pd.Timestamp(ts / (1000 if ts > 1e11 else 1), unit="s", tz="UTC")
        mtype = dec.msg_type
        if mtype in (1, 2, 3, 18, 19, 27):
            positions.append({"mmsi": int(dec.mmsi), "time": t, "lat": dec.lat, "lon": dec.lon,
                              "sog": getattr(dec, "speed", None),
                              "cog": getattr(dec, "course", None),
                              "heading": getattr(dec, "heading", None)})
        if mtype in (5, 19, 24):
            row = {"mmsi": int(dec.mmsi), "time": t if not pd.isna(t) else pd.Timestamp(0,
                                                                                       tz="UTC")}
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
    return pos, pd.DataFrame(rejects)


def read_ais_table(source: str | Path | pd.DataFrame, *, provider: str | None = None
                   ) -> AisTable:
    """Read and validate AIS points from a file or DataFrame → :class:`AisTable`.

    Formats by extension: .csv, .xlsx/.xls, .parquet, .nmea/.txt/.ais (AIVDM), .jsonl/.json
    (aisstream frames). Bad rows are recorded in ``rejects`` and skipped; an unreadable file
    or a missing required column raises ``InputError``.
    """
    if isinstance(source, pd.DataFrame):
        return normalize_points(source, source="<DataFrame>", provider=provider or "dataframe")
    path = Path(source)
    if not path.is_file():
        raise InputError(f"AIS file {path} does not exist")
    suffix = path.suffix.lower()
    extra_rejects = pd.DataFrame()
    dayfirst = False
    try:
        if suffix == ".csv":
            head = path.open(encoding="utf-8", errors="replace").readline()
            dayfirst = "# Timestamp" in head or "Type of mobile" in head  # DMA layout
            raw = pd.read_csv(path, low_memory=False)
        elif suffix in (".xlsx", ".xls"):
            raw = pd.read_excel(path)
        elif suffix == ".parquet":
            raw = pd.read_parquet(path)
        elif suffix in (".nmea", ".txt", ".ais"):
            raw, extra_rejects = read_nmea(path)
        elif suffix in (".jsonl", ".json", ".ndjson"):
            raw, extra_rejects = read_aisstream_jsonl(path)
        else:
            raise InputError(f"AIS file {path}: unknown format {suffix!r}; use .csv, .xlsx, "
                             ".parquet, .nmea or .jsonl")
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"AIS file {path} cannot be read: {exc}") from exc
    table = normalize_points(raw, source=path.name, provider=provider or (
        str(raw["provider"].iloc[0]) if "provider" in raw and len(raw) else "file"),
        dayfirst=dayfirst)
    if len(extra_rejects):
        rej = pd.concat([extra_rejects, table.rejects], ignore_index=True)
        table = AisTable(table.points, rej)
    log.info("read %s: %d valid point(s), %d rejected", path.name, len(table.points),
             len(table.rejects))
    return table
