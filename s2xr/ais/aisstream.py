"""The aisstream.io protocol: message types, times, subscriptions and bounding boxes.

Facts (``DESIGN.md`` §4, ``tests/data/ais/``): a frame is
``{"MessageType", "MetaData": {MMSI, MMSI_String, ShipName (space padded), latitude,
longitude, time_utc ("2024-09-17 14:38:55.281038479 +0000 UTC")}, "Message": {<type>: {...}}}``.
The subscription, sent within 3 s of connecting, is ``{"APIKey", "BoundingBoxes":
[[[lat, lon], [lat, lon]], ...], "FiltersShipMMSI"?: ["9-digit strings"],
"FilterMessageTypes"?: [...]}`` — latitude first. The service answers a bad subscription with
``{"error": "..."}`` and closes.

Frames are parsed and validated by :class:`~s2xr.ais.frames.FrameParser`
(:mod:`s2xr.ais.frames`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

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


def in_any_box(boxes: Sequence[Box], lat: np.ndarray | float, lon: np.ndarray | float
               ) -> np.ndarray:
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
