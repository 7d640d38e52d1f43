"""Backfill (demo) windows: every past day, at the time of day the tile is really imaged.

For collecting historical AIS around Sentinel-2 sensing times when no plan is at hand. Per
tile and UTC day:

* the day has a pass in the TLE prediction → that pass (satellite, relative orbit, times);
* otherwise → one window at the tile's typical pass time of day (satellite ``S2``, no
  orbit), the median over a 10-day cycle of TLE passes next to the TLE epoch;
* no TLE pass at all (no element sets, or a tile never imaged in daylight) → 10:30 mean
  local solar time of the descending node carried to the tile's latitude along the nominal
  orbit (:func:`nominal_pass_time_of_day`), never a fixed 10:30 UTC;
* days when the sun is down at the tile then (polar night) get no window.

Past days are predicted a whole number of 10-day cycles nearer the TLE epoch and shifted
back: the ground track repeats every cycle, and SGP4 far from its epoch does not. This
assumes each satellite kept its orbital slot (S2C took S2A's in 2025: S2A days before that
come out in S2A's present slot).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd

from s2xr.planning.earth import sun_elevation_deg, tile_sample_points
from s2xr.planning.tle import (
    CYCLE_DAYS,
    INCLINATION_DEG,
    MIN_SUN_ELEVATION_DEG,
    PASS_COLUMNS,
    TleSet,
    predict_tle_passes,
)

log = logging.getLogger(__name__)

LTDN_HOURS = 10.5  # Sentinel-2 mean local solar time at the descending node
_DAY = pd.Timedelta(days=1)


def nominal_pass_time_of_day(lon: float, lat: float) -> float:
    """UTC hour (0–24) at which the nominal descending 10:30 orbit's ground track crosses
    latitude ``lat``, for a point at longitude ``lon`` on it.

    On the sun-synchronous orbit the local solar time of the ground track at argument of
    latitude u is LTDN + Δα/15°, Δα the right-ascension difference from the descending
    node: atan2(cos i sin u, cos u) − 180°.
    """
    i = np.radians(INCLINATION_DEG)
    s = np.clip(np.sin(np.radians(lat)) / np.sin(i), -1, 1)
    u = np.pi - np.arcsin(s)
    d_alpha = np.degrees(np.arctan2(np.cos(i) * np.sin(u), np.cos(u)))
    d_alpha = d_alpha % 360.0 - 180.0  # minus the node's 180°, wrapped to ±180°
    return float((LTDN_HOURS + d_alpha / 15.0 - lon / 15.0) % 24.0)


def _fold(day: pd.Timestamp, epoch: pd.Timestamp) -> pd.Timedelta:
    return pd.Timedelta(days=CYCLE_DAYS * round((epoch - day) / pd.Timedelta(days=CYCLE_DAYS)))


def _folded_passes(tiles: Sequence[str], start: pd.Timestamp, end: pd.Timestamp,
                   tles: dict[str, TleSet]) -> pd.DataFrame:
    """TLE passes in [start, end), each satellite's span folded into its epoch's cycle."""
    parts = []
    for sat, tle in tles.items():
        a = start
        while a < end:  # fold at most one cycle at a time so each piece shifts uniformly
            b = min(end, a.floor("D") + pd.Timedelta(days=CYCLE_DAYS))
            shift = _fold(a, tle.epoch)
            p = predict_tle_passes(list(tiles), a + shift, b + shift, {sat: tle})
            for c in ("sensing_start_utc", "sensing_end_utc", "centre_time_utc"):
                p[c] = p[c] - shift
            parts.append(p)
            a = b
    parts = [p for p in parts if len(p)]
    if not parts:
        return pd.DataFrame(columns=list(PASS_COLUMNS))
    out = pd.concat(parts, ignore_index=True)
    # daylight where the pass really happens, not in the folded cycle
    centre = {t: [float(v[0]) for v in tile_sample_points(t, n=1)] for t in set(out["tile_id"])}
    lon = out["tile_id"].map(lambda t: centre[t][0]).to_numpy(float)
    lat = out["tile_id"].map(lambda t: centre[t][1]).to_numpy(float)
    out["sun_elevation_deg"] = np.round(sun_elevation_deg(
        pd.DatetimeIndex(out["centre_time_utc"]), lon, lat), 2)
    return out[out["sun_elevation_deg"] > MIN_SUN_ELEVATION_DEG].reset_index(drop=True)


def _typical_hour(passes: pd.DataFrame) -> float | None:
    """Median time of day (UTC hours) of the well-covered passes, on the circle."""
    if passes.empty:
        return None
    good = passes[passes["coverage"] >= 0.5]
    good = good if len(good) else passes
    t = good["centre_time_utc"]
    h = (t - t.dt.floor("D")) / pd.Timedelta(hours=1)
    ang = np.angle(np.mean(np.exp(1j * np.radians(h.to_numpy(float) * 15.0))))
    ref = (np.degrees(ang) / 15.0) % 24.0
    rel = ((h.to_numpy(float) - ref + 12.0) % 24.0) - 12.0
    return float((ref + np.median(rel)) % 24.0)


def backfill_passes(tiles: Sequence[str], start: pd.Timestamp, end: pd.Timestamp,
                    tles: dict[str, TleSet] | None, *, now: pd.Timestamp | None = None
                    ) -> pd.DataFrame:
    """Backfill windows for every UTC day in [start, end) (see the module docstring).

    Returns DataFrame[tile_id, satellite ("S2A"/"S2B"/"S2C", or "S2" for a day without a
    predicted pass), sensing_start_utc, sensing_end_utc, centre_time_utc, relative_orbit
    (Int64, NA for "S2" rows), cross_track_km, coverage (NaN for "S2" rows),
    sun_elevation_deg, basis ("tle pass", "tle time of day", "10:30 LST")].
    """
    now = pd.Timestamp.now(tz="UTC") if now is None else now
    if end > now:
        log.warning("backfill covers days after now (%s); backfill is meant for past days — "
                    "use mode tle or auto to plan the future", f"{now:%Y-%m-%d %H:%M}Z")
    days = pd.date_range(start.floor("D"), end - pd.Timedelta(1, "ns"), freq="D")
    days = days[(days + _DAY > start)]
    tles = tles or {}
    real = _folded_passes(tiles, start, end, tles) if tles else pd.DataFrame(
        columns=list(PASS_COLUMNS))
    real["basis"] = "tle pass"
    rows = []
    for tile in tiles:
        lon, lat = (float(v[0]) for v in tile_sample_points(tile, n=1))
        mine = real[real["tile_id"] == tile]
        hour = None
        if tles:
            epoch = min(t.epoch for t in tles.values()).floor("D")
            hour = _typical_hour(predict_tle_passes([tile], epoch - pd.Timedelta(days=5),
                                                    epoch + pd.Timedelta(days=5), tles))
        basis = "tle time of day" if hour is not None else "10:30 LST"
        if hour is None:
            hour = nominal_pass_time_of_day(lon, lat)
        log.info("backfill %s: typical pass at %s UTC (%s)", tile,
                 f"{pd.Timestamp(0) + pd.Timedelta(hours=hour):%H:%M:%S}", basis)
        have = set(pd.to_datetime(mine["centre_time_utc"], utc=True).dt.floor("D"))
        for d in days:
            if d in have:
                continue
            t = d + pd.Timedelta(hours=hour)
            if not start <= t < end:
                continue
            sun = float(sun_elevation_deg(pd.DatetimeIndex([t]), lon, lat)[0])
            if sun <= MIN_SUN_ELEVATION_DEG:  # nothing is imaged in the dark
                continue
            rows.append({"tile_id": tile, "satellite": "S2", "sensing_start_utc": t,
                         "sensing_end_utc": t, "centre_time_utc": t,
                         "relative_orbit": pd.NA, "cross_track_km": np.nan,
                         "coverage": np.nan, "sun_elevation_deg": round(sun, 2),
                         "basis": basis})
    filler = pd.DataFrame(rows, columns=[*PASS_COLUMNS, "basis"])
    parts = [x.astype(object) for x in (real, filler) if len(x)]
    out = pd.concat(parts, ignore_index=True) if parts else filler
    for c in ("cross_track_km", "coverage", "sun_elevation_deg"):
        out[c] = pd.to_numeric(out[c], errors="coerce")
    for c in ("sensing_start_utc", "sensing_end_utc", "centre_time_utc"):
        out[c] = pd.to_datetime(out[c], utc=True)
    out["relative_orbit"] = out["relative_orbit"].astype("Int64")
    return out.sort_values(["centre_time_utc", "tile_id"], ignore_index=True)
