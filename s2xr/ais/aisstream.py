"""The aisstream.io protocol: message parsing, subscriptions and bounding boxes.

Facts (``DESIGN.md`` §4, ``tests/data/ais/``): a frame is
``{"MessageType", "MetaData": {MMSI, MMSI_String, ShipName (space padded), latitude,
longitude, time_utc ("2024-09-17 14:38:55.281038479 +0000 UTC")}, "Message": {<type>: {...}}}``.
The subscription, sent within 3 s of connecting, is ``{"APIKey", "BoundingBoxes":
[[[lat, lon], [lat, lon]], ...], "FiltersShipMMSI"?: ["9-digit strings"],
"FilterMessageTypes"?: [...]}`` — latitude first. The service answers a bad subscription with
``{"error": "..."}`` and closes.

:class:`FrameParser` turns raw frames into validated position / static rows, counting (never
raising for) malformed JSON, unknown types, missing fields, invalid positions, bad MMSIs,
unparseable or future times and duplicates.
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from s2xr.ais.mmsi import parse_mmsi
from s2xr.errors import InputError

POSITION_TYPES = ("PositionReport", "StandardClassBPositionReport",
                  "ExtendedClassBPositionReport")
STATIC_TYPES = ("ShipStaticData", "StaticDataReport")
CAPTURE_TYPES = POSITION_TYPES + STATIC_TYPES
MESSAGE_TYPES = (
    *CAPTURE_TYPES, "AddressedBinaryMessage", "AddressedSafetyMessage", "AidsToNavigationReport",
    "AssignedModeCommand", "BaseStationReport", "BinaryAcknowledge", "BinaryBroadcastMessage",
    "ChannelManagement", "CoordinatedUTCInquiry", "DataLinkManagementMessage",
    "GnssBroadcastBinaryMessage", "GroupAssignmentCommand", "Interrogation",
    "LongRangeAisBroadcastMessage", "MultiSlotBinaryMessage", "SafetyBroadcastMessage",
    "SingleSlotBinaryMessage", "StandardSearchAndRescueAircraftReport", "UnknownMessage")
DEFAULT_URL = "wss://stream.aisstream.io/v0/stream"
PROVIDER_KEY = "S2xrProvider"  # MetaData key marking synthetic frames (never sent by aisstream)

POSITION_ROW_COLUMNS = ["mmsi", "time", "lat", "lon", "sog", "cog", "heading", "nav_status",
                        "message_type", "ship_name", "ship_type", "to_bow", "to_stern",
                        "to_port", "to_starboard", "provider"]
STATIC_ROW_COLUMNS = ["mmsi", "time", "message_type", "part", "ship_name", "ship_type",
                      "call_sign", "imo", "destination", "to_bow", "to_stern", "to_port",
                      "to_starboard", "length", "beam", "provider"]


# ----------------------------------------------------------------------------- parsing
def parse_aisstream_time(value: str) -> pd.Timestamp:
    """aisstream's Go time "2024-09-17 14:38:55.281038479 +0000 UTC" → UTC Timestamp (ns)."""
    text = str(value).strip()
    if text.endswith(" UTC"):
        text = text[:-4].strip()
    if text.endswith("+0000"):
        text = text[:-5].strip()
    ts = pd.Timestamp(text)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def format_aisstream_time(ts: pd.Timestamp) -> str:
    """UTC Timestamp → aisstream's Go time text (nanoseconds, "+0000 UTC")."""
    ts = pd.Timestamp(ts).tz_convert("UTC") if pd.Timestamp(ts).tzinfo else pd.Timestamp(ts)
    return ts.strftime("%Y-%m-%d %H:%M:%S") + f".{ts.microsecond * 1000 + ts.nanosecond:09d}" \
        " +0000 UTC"


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

    Position rows: mmsi, time, lat, lon, sog (kn), cog, heading (deg; 511 / 360 / 102.3 →
    NaN), nav_status, message_type, ship_name (stripped), ship_type, to_bow…to_starboard
    (Extended class B), provider. Static rows: mmsi, time, message_type, part ('A'/'B' for
    StaticDataReport), ship_name, ship_type (0 → None), call_sign, imo (0 → None),
    destination, to_bow…to_starboard, length (A+B), beam (C+D), provider.
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
            "lon": _num(body["Longitude"]), "sog": sog if sog < 102.2 else math.nan,
            "cog": cog if cog < 360 else math.nan, "heading": hdg if hdg < 360 else math.nan,
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
    counts: Counter = field(default_factory=Counter)
    last_skip: str | None = None
    _seen: dict = field(default_factory=dict, repr=False)

    def _skip(self, reason: str) -> None:
        self.counts[reason] += 1
        self.last_skip = reason

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
            key: tuple = ("p", row["mmsi"], row["time"].value, lat, lon)
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


# ----------------------------------------------------------------------------- boxes
@dataclass(frozen=True)
class Box:
    """A lat/lon bounding box (degrees). aisstream wants ``[[south, west], [north, east]]``
    — latitude first. ``west > east`` is not allowed: split boxes at the antimeridian."""

    south: float
    west: float
    north: float
    east: float

    def __post_init__(self) -> None:
        if not (-90 <= self.south <= self.north <= 90):
            raise InputError(f"box {self}: need −90 ≤ south ≤ north ≤ 90 (latitude first)")
        if not (-180 <= self.west <= self.east <= 180):
            raise InputError(f"box {self}: need −180 ≤ west ≤ east ≤ 180")

    def to_aisstream(self) -> list[list[float]]:
        """``[[south, west], [north, east]]`` (latitude first), as aisstream expects."""
        return [[self.south, self.west], [self.north, self.east]]

    @classmethod
    def from_aisstream(cls, corners: Sequence[Sequence[float]]) -> Box:
        """Two ``[lat, lon]`` corners in any order → :class:`Box`."""
        (la1, lo1), (la2, lo2) = corners
        return cls(min(la1, la2), min(lo1, lo2), max(la1, la2), max(lo1, lo2))

    @classmethod
    def parse(cls, text: str) -> Box:
        """"south,west,north,east" (degrees) → :class:`Box`."""
        try:
            s, w, n, e = (float(v) for v in text.replace(" ", "").split(","))
        except ValueError:
            raise InputError(f"box {text!r}: write south,west,north,east in degrees, e.g. "
                             "35.5,-6.5,36.5,-5.0") from None
        return cls(s, w, n, e)

    def contains(self, lat: np.ndarray | float, lon: np.ndarray | float) -> np.ndarray:
        """Whether points lie in the box (edges included)."""
        lat, lon = np.asarray(lat, float), np.asarray(lon, float)
        return (lat >= self.south) & (lat <= self.north) & (lon >= self.west) & \
            (lon <= self.east)


WORLD = Box(-90.0, -180.0, 90.0, 180.0)


def boxes_for_tiles(tile_ids: Iterable[str]) -> list[Box]:
    """One box per tile footprint (two for a tile crossing the antimeridian), from
    :func:`s2xr.grid.tile_footprint`, sorted and without repeats."""
    from s2xr.grid import tile_footprint

    out: set[Box] = set()
    for tid in tile_ids:
        fp = tile_footprint(tid)
        for part in getattr(fp, "geoms", [fp]):
            w, s, e, n = part.bounds
            out.add(Box(round(s, 6), round(w, 6), round(n, 6), round(e, 6)))
    return sorted(out, key=lambda b: (b.south, b.west, b.north, b.east))


def in_any_box(boxes: Sequence[Box], lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Whether each point lies in at least one box."""
    lat, lon = np.asarray(lat, float), np.asarray(lon, float)
    hit = np.zeros(lat.shape, bool)
    for b in boxes:
        hit |= b.contains(lat, lon)
    return hit


# ----------------------------------------------------------------------------- subscription
def build_subscription(api_key: str, boxes: Sequence[Box], *,
                       mmsi: Sequence[str | int] = (),
                       message_types: Sequence[str] = CAPTURE_TYPES) -> dict[str, Any]:
    """The subscription message: boxes latitude first, MMSIs as 9-character strings.

    The returned dict holds the API key: send it, never log or store it.
    """
    if not api_key:
        raise InputError("no aisstream API key: set AISSTREAM_API_KEY in the environment or "
                         "in .env")
    if not boxes:
        raise InputError("no bounding boxes to subscribe to: give boxes, tiles or a schedule")
    sub: dict[str, Any] = {"APIKey": api_key,
                           "BoundingBoxes": [b.to_aisstream() for b in boxes]}
    if mmsi:
        ids = [str(m).strip() for m in mmsi]
        bad = [m for m in ids if not (len(m) == 9 and m.isdigit())]
        if bad:
            raise InputError(f"MMSI filter {bad}: each MMSI must be 9 digits")
        sub["FiltersShipMMSI"] = ids
    if message_types:
        unknown = [t for t in message_types if t not in MESSAGE_TYPES]
        if unknown:
            raise InputError(f"unknown aisstream message type(s) {unknown}; use e.g. "
                             f"{list(CAPTURE_TYPES)}")
        sub["FilterMessageTypes"] = list(message_types)
    return sub


class SubscriptionError(ValueError):
    """A subscription the service would refuse (the message is what the server answers)."""


@dataclass(frozen=True)
class Subscription:
    """A validated subscription (the API key is not kept, only whether it was accepted)."""

    boxes: tuple[Box, ...]
    mmsi: frozenset[int] | None
    message_types: frozenset[str] | None


def validate_subscription(text: str | bytes, *, valid_keys: Iterable[str] | None = None
                          ) -> Subscription:
    """Check a subscription as aisstream does; raise :class:`SubscriptionError` with the
    service's error text ("Api Key Is Not Valid", "Subscription Object Is Malformed: …")."""
    try:
        sub = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError, TypeError):
        raise SubscriptionError("Subscription Object Is Malformed") from None
    if not isinstance(sub, dict):
        raise SubscriptionError("Subscription Object Is Malformed")
    key = sub.get("APIKey")
    if not isinstance(key, str) or not key.strip():
        raise SubscriptionError("Api Key Is Not Valid")
    if valid_keys is not None and key not in set(valid_keys):
        raise SubscriptionError("Api Key Is Not Valid")
    raw_boxes = sub.get("BoundingBoxes")
    if not isinstance(raw_boxes, list) or not raw_boxes:
        raise SubscriptionError("Subscription Object Is Malformed: BoundingBoxes missing")
    boxes = []
    for b in raw_boxes:
        ok = (isinstance(b, list) and len(b) == 2 and all(
            isinstance(c, list) and len(c) == 2 and all(
                isinstance(v, int | float) and not isinstance(v, bool) for v in c) for c in b))
        if not ok:
            raise SubscriptionError("Subscription Object Is Malformed: a bounding box must "
                                    "be [[lat, lon], [lat, lon]]")
        if any(abs(c[0]) > 90 or abs(c[1]) > 180 for c in b):
            raise SubscriptionError("Subscription Object Is Malformed: bounding box corner "
                                    "out of range (latitude first)")
        boxes.append(Box.from_aisstream(b))
    mmsi = sub.get("FiltersShipMMSI")
    if mmsi is not None and (not isinstance(mmsi, list) or not all(
            isinstance(m, str) and len(m) == 9 and m.isdigit() for m in mmsi)):
        raise SubscriptionError("Subscription Object Is Malformed: FiltersShipMMSI must "
                                "be 9-character strings")
    types = sub.get("FilterMessageTypes")
    if types is not None and (not isinstance(types, list) or
                              not all(t in MESSAGE_TYPES for t in types)):
        raise SubscriptionError("Subscription Object Is Malformed: unknown FilterMessageTypes")
    extra = set(sub) - {"APIKey", "BoundingBoxes", "FiltersShipMMSI", "FilterMessageTypes"}
    if extra:
        raise SubscriptionError(f"Subscription Object Is Malformed: unknown key(s) "
                                f"{sorted(extra)}")
    return Subscription(tuple(boxes), frozenset(int(m) for m in mmsi) if mmsi else None,
                        frozenset(types) if types else None)


class QuietFrames(logging.Filter):
    """Drops websockets' frame dumps ("> TEXT '{"APIKey": ...'"): they would log the
    subscription and its API key."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = str(record.msg)
        return not (msg.startswith(("<", ">")) or "TEXT" in msg or "BINARY" in msg)


def quiet_websocket_logger(name: str) -> logging.Logger:
    """The logger to give ``websockets`` (client or server): frame dumps filtered out."""
    logger = logging.getLogger(name)
    if not any(isinstance(f, QuietFrames) for f in logger.filters):
        logger.addFilter(QuietFrames())
    return logger
