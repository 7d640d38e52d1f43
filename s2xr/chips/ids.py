"""Chip identity: stable IDs from the ship, the scene time and the position."""

from __future__ import annotations

import hashlib

import pandas as pd


def chip_id(mmsi: int, scene_datetime: pd.Timestamp | str, lat: float, lon: float) -> str:
    """First 16 hex digits of sha1("mmsi|scene_datetime|round(lat,5)|round(lon,5)").

    ``scene_datetime`` is rendered as ISO 8601 UTC with microseconds and ``Z``
    (``2026-09-30T10:56:12.345000Z``), so the same scene gives the same ID everywhere.
    """
    t = pd.Timestamp(scene_datetime)
    t = t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")
    key = f"{int(mmsi)}|{t.strftime('%Y-%m-%dT%H:%M:%S.%fZ')}|{round(float(lat), 5):.5f}|" \
          f"{round(float(lon), 5):.5f}"
    return hashlib.sha1(key.encode()).hexdigest()[:16]
