"""aisstream frames → validated position / static rows.

:class:`FrameParser` turns raw frames into validated position / static rows, counting (never
raising for) malformed JSON, unknown types, missing fields, invalid positions, bad MMSIs,
unparseable or future times and duplicates; :func:`parse_aisstream_message` reads one decoded
frame. The frame format is described in :mod:`s2xr.ais.aisstream`.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from s2xr.ais.aisstream import (
    CAPTURE_TYPES,
    MESSAGE_TYPES,
    POSITION_TYPES,
    PROVIDER_KEY,
    parse_aisstream_time,
)
from s2xr.ais.mmsi import parse_mmsi
from s2xr.ais.sentinels import angle_value, sog_value

POSITION_ROW_COLUMNS = ["mmsi", "time", "lat", "lon", "sog", "cog", "heading", "nav_status",
                        "message_type", "ship_name", "ship_type", "to_bow", "to_stern",
                        "to_port", "to_starboard", "provider"]
STATIC_ROW_COLUMNS = ["mmsi", "time", "message_type", "part", "ship_name", "ship_type",
                      "call_sign", "imo", "destination", "to_bow", "to_stern", "to_port",
                      "to_starboard", "length", "beam", "provider"]


def _num(v: Any) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return math.nan
    return f if math.isfinite(f) else math.nan


def _text(v: Any) -> str | None:
    s = str(v).replace("@", " ").strip() if v is not None else ""
    return s or None


def _dimensions(d: dict[str, Any] | None) -> dict[str, float]:
    if not isinstance(d, dict):
        return {}
    out = {k: _num(d.get(src)) for k, src in (("to_bow", "A"), ("to_stern", "B"),
                                                ("to_port", "C"), ("to_starboard", "D"))}
    return {k: (v if v > 0 else math.nan) for k, v in out.items()}


def parse_aisstream_message(frame: dict[str, Any], *, provider: str = "aisstream"
                            ) -> tuple[str, dict[str, Any] | None]:
    """One decoded aisstream frame → (kind, row); kind "position" | "static" | "other".

    Position rows: mmsi, time, lat, lon, sog (kn), cog, heading (deg; ITU-R M.1371 "not
    available" — heading 511, course 360, speed 102.3 — → NaN, :mod:`s2xr.ais.sentinels`;
    102.2 kn "or more" is kept), nav_status, message_type, ship_name (stripped), ship_type,
    to_bow…to_starboard (Extended class B), provider. Static rows: mmsi, time,
    message_type, part ('A'/'B' for StaticDataReport), ship_name, ship_type (0 → None),
    call_sign, imo (0 → None), destination, to_bow…to_starboard, length (A+B), beam (C+D),
    provider.
    Raises KeyError / TypeError / ValueError on malformed frames (callers count and skip).
    Values are not range-checked here (see :meth:`FrameParser.parse`).
    """
    mtype = frame["MessageType"]
    meta = frame["MetaData"]
    if not isinstance(meta, dict):
        raise TypeError("MetaData is not an object")
    if mtype not in CAPTURE_TYPES:
        return "other", None
    body = frame["Message"][mtype]
    if not isinstance(body, dict):
        raise TypeError(f"Message.{mtype} is not an object")
    mmsi = int(meta["MMSI"])
    time = parse_aisstream_time(meta["time_utc"])
    name = _text(meta.get("ShipName"))
    provider = str(meta.get(PROVIDER_KEY) or provider)
    if mtype in POSITION_TYPES:
        sog, cog, hdg = _num(body.get("Sog")), _num(body.get("Cog")), _num(body.get("TrueHeading"))
        row: dict[str, Any] = {
            "mmsi": mmsi, "time": time, "lat": _num(body["Latitude"]),
            "lon": _num(body["Longitude"]), "sog": sog_value(sog),
            "cog": angle_value(cog), "heading": angle_value(hdg),
            "nav_status": body.get("NavigationalStatus"), "message_type": mtype,
            "ship_name": name, "ship_type": None, "provider": provider}
        if mtype == "ExtendedClassBPositionReport":
            row.update(_dimensions(body.get("Dimension")))
            row["ship_type"] = int(body["Type"]) if body.get("Type") else None
            row["ship_name"] = _text(body.get("Name")) or name
        return "position", row
    row = {"mmsi": mmsi, "time": time, "message_type": mtype, "part": None,
           "ship_name": None, "ship_type": None, "call_sign": None, "imo": None,
           "destination": None, "provider": provider}
    if mtype == "ShipStaticData":
        row.update(ship_name=_text(body.get("Name")) or name,
                   ship_type=int(body["Type"]) if body.get("Type") else None,
                   call_sign=_text(body.get("CallSign")),
                   imo=int(body["ImoNumber"]) if body.get("ImoNumber") else None,
                   destination=_text(body.get("Destination")),
                   **_dimensions(body.get("Dimension")))
    else:  # StaticDataReport: part A carries the name, part B type, call sign, dimensions
        a, b = body.get("ReportA") or {}, body.get("ReportB") or {}
        if a.get("Valid"):
            row.update(part="A", ship_name=_text(a.get("Name")) or name)
        if b.get("Valid"):
            row.update(part="B" if not a.get("Valid") else "AB",
                       ship_type=int(b["ShipType"]) if b.get("ShipType") else None,
                       call_sign=_text(b.get("CallSign")), **_dimensions(b.get("Dimension")))
        if row["part"] is None:
            row["ship_name"] = name
    a_b = row.get("to_bow", math.nan) + row.get("to_stern", math.nan)
    c_d = row.get("to_port", math.nan) + row.get("to_starboard", math.nan)
    row["length"], row["beam"] = a_b, c_d
    return "static", row


@dataclass
class ParsedFrame:
    """A frame that passed validation: kind "position" | "static" and its row; or kind
    "error" with the server's error text (a rejected subscription)."""

    kind: str
    row: dict[str, Any] | None = None
    error: str | None = None


@dataclass
class FrameParser:
    """Validates frames one by one, counting every skipped frame by reason in ``counts``
    (malformed_json, not_an_object, missing_field, unknown_type, other_type, bad_mmsi,
    invalid_position, bad_time, future_time, duplicate) and accepted ones (position, static).

    Duplicates (same MMSI, time, position for positions; same MMSI, time, type and part for
    static records) are skipped — the last ``max_seen`` keys are remembered — so a capture
    that reconnects and is sent overlapping messages stores each record once (storage merges
    by the same keys as a second guard).
    """

    provider: str = "aisstream"
    max_future_s: float = 300.0
    max_seen: int = 2_000_000  # remembered record keys (oldest forgotten first)
    counts: Counter[str] = field(default_factory=Counter)
    last_skip: str | None = None
    _seen: dict[tuple[Any, ...], None] = field(default_factory=dict, repr=False)

    def _skip(self, reason: str) -> ParsedFrame | None:
        """Count a skipped frame; returns None, what :meth:`parse` returns for it."""
        self.counts[reason] += 1
        self.last_skip = reason
        return None

    def parse(self, text: str | bytes, *, now: pd.Timestamp | None = None
              ) -> ParsedFrame | None:
        """Raw frame text → :class:`ParsedFrame`, or None when the frame is skipped (the
        reason is counted and left in ``last_skip``)."""
        self.counts["frames"] += 1
        self.last_skip = None
        try:
            frame = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError, TypeError, RecursionError):
            return self._skip("malformed_json")  # RecursionError: nested too deep
        if not isinstance(frame, dict):
            return self._skip("not_an_object")
        if "error" in frame and "MessageType" not in frame:
            self.counts["server_error"] += 1
            return ParsedFrame("error", error=str(frame["error"]))
        mtype = frame.get("MessageType")
        if mtype not in MESSAGE_TYPES:
            return self._skip("unknown_type" if mtype is not None else "missing_field")
        meta = frame.get("MetaData")
        if isinstance(meta, dict) and "time_utc" in meta:
            try:
                parse_aisstream_time(meta["time_utc"])
            except (ValueError, TypeError):
                return self._skip("bad_time")
        if mtype in CAPTURE_TYPES and isinstance(meta, dict) and "MMSI" in meta and \
                parse_mmsi(meta["MMSI"]) is None:  # ITU-R M.585, as for files
            return self._skip("bad_mmsi")
        try:
            kind, row = parse_aisstream_message(frame, provider=self.provider)
        except (KeyError, TypeError, ValueError, AttributeError):
            return self._skip("missing_field")
        if kind == "other" or row is None:
            return self._skip("other_type")
        if pd.isna(row["time"]):
            return self._skip("bad_time")
        now = now if now is not None else pd.Timestamp.now(tz="UTC")
        if (row["time"] - now).total_seconds() > self.max_future_s:
            return self._skip("future_time")
        if kind == "position":
            lat, lon = row["lat"], row["lon"]
            if not (abs(lat) <= 90 and abs(lon) <= 180) or (lat == 0 and lon == 0):
                return self._skip("invalid_position")
            key: tuple[Any, ...] = ("p", row["mmsi"], row["time"].value, lat, lon)
        else:
            key = ("s", row["mmsi"], row["time"].value, row["message_type"], row["part"])
        if key in self._seen:
            return self._skip("duplicate")
        self._seen[key] = None
        if len(self._seen) > self.max_seen:  # bounded memory on endless captures
            del self._seen[next(iter(self._seen))]
        self.counts[kind] += 1
        return ParsedFrame(kind, row)

    @property
    def skipped(self) -> dict[str, int]:
        """Counts of skipped frames by reason (zero counts left out)."""
        ok = {"frames", "position", "static"}
        return {k: v for k, v in sorted(self.counts.items()) if k not in ok and v}

