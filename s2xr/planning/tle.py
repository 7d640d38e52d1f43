"""Sentinel-2 overpasses from two-line element sets (TLE), propagated with skyfield/SGP4.

A tile is imaged when the 290 km MSI swath sweeps over its footprint, not when the satellite
rises above the tile centre's horizon. For every descending, daylit pass this module finds,
for a 9×9 grid of points spread over the tile footprint, the instant each point is abeam of
the satellite (along-track distance 0 in the ground track's tangent frame) and its
cross-track distance; the points within ±145 km are imaged. The sensing span of the tile is
the first to the last such instant, padded by ``overpass_window_minutes``.

Conventions (see ``docs/planning.md``):

* SGP4 states (TEME) come from skyfield's ``EarthSatellite.model`` and are rotated into the
  Earth-fixed frame with GMST 1982 (AIAA 2006-6753), the frame TLEs are fitted in; no
  ephemeris file is needed.
* *Daytime*: the sun is above the horizon (elevation > :data:`MIN_SUN_ELEVATION_DEG`) at the
  tile centre at its sensing time, from a low-precision solar-position formula (USNO
  approximate, ~0.01°; :mod:`s2xr.planning.earth`), so no ``de421.bsp`` is loaded.
  *Descending*: the satellite's Earth-fixed z velocity is negative.
* *Relative orbit*: the orbit of a pass starts at its last ascending-node crossing (ANX);
  the 143 relative orbits of the 10-day cycle are told apart by the ANX longitude (adjacent
  orbits 3600/143° apart, R+1 west of R), calibrated once on the real pass of S2C over 39QTA
  on 2026-09-30 (relative orbit 106, the orbit of ``S2A_MSIL2A_20230628T070631_N0509_R106``).
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from s2xr.errors import PlanningError
from s2xr.planning.earth import (
    ecef_to_geodetic,
    geodetic_to_ecef,
    local_up,
    sun_elevation_deg,
    tile_sample_points,
)

log = logging.getLogger(__name__)

NORAD_IDS = {40697: "S2A", 42063: "S2B", 60989: "S2C"}
SWATH_KM = 290.0
MIN_SUN_ELEVATION_DEG = 0.0
INCLINATION_DEG = 98.57  # mean of the bundled TLEs (used by the ESA along-track model)
N_RELATIVE_ORBITS = 143
CYCLE_DAYS = 10
# ANX longitude (deg east) of relative orbit 1, calibrated as the module docstring says.
ANX_LON_R1_DEG = 0.988
_ANX_STEP_DEG = 360.0 * CYCLE_DAYS / N_RELATIVE_ORBITS
_INV10_MOD143 = 43  # 10·43 ≡ 1 (mod 143)

_TLE_LINE = re.compile(r"^[12] [0-9A-Z ]\d{4}")
_S2_NAME = re.compile(r"SENTINEL[- ]?2([A-D])\b", re.IGNORECASE)

PASS_COLUMNS = ("tile_id", "satellite", "sensing_start_utc", "sensing_end_utc",
                "centre_time_utc", "relative_orbit", "cross_track_km", "coverage",
                "sun_elevation_deg")


@dataclass(frozen=True)
class TleSet:
    """One validated element set: ``satellite`` is "S2A"/"S2B"/"S2C", ``epoch`` UTC."""

    satellite: str
    norad_id: int
    name: str
    line1: str
    line2: str
    epoch: pd.Timestamp
    source: str
    line_no: int

    @functools.cached_property
    def earth_satellite(self):  # -> skyfield.sgp4lib.EarthSatellite
        """The skyfield satellite (its ``.model`` is the SGP4 ``Satrec``)."""
        from skyfield.api import EarthSatellite

        return EarthSatellite(self.line1, self.line2, self.name, _timescale())


@functools.lru_cache(maxsize=1)
def _timescale():
    from skyfield.api import load

    return load.timescale(builtin=True)


def tle_checksum(line: str) -> int:
    """The TLE checksum of the first 68 characters: digits count their value, '-' counts 1."""
    return sum(int(c) if c.isdigit() else (1 if c == "-" else 0) for c in line[:68]) % 10


def _check_line(line: str, kind: str, line_no: int, source: str) -> None:
    if len(line) != 69:
        raise PlanningError(f"{source}: line {line_no}: TLE line {kind} has {len(line)} "
                            "characters, a TLE line has exactly 69; the file is truncated or "
                            "was re-wrapped — download it again")
    if not line[68].isdigit():
        raise PlanningError(f"{source}: line {line_no}: TLE line {kind} ends with "
                            f"{line[68]!r}, not a checksum digit")
    want = tle_checksum(line)
    if want != int(line[68]):
        raise PlanningError(f"{source}: line {line_no}: TLE line {kind} checksum is "
                            f"{line[68]} but the line sums to {want} (mod 10); the line is "
                            "corrupt or was edited — download the element set again")


def parse_tle_text(text: str, source: str = "<text>") -> list[TleSet]:
    """Parse 2-line or 3-line (name + 2 lines) element sets; keep the Sentinel-2 ones.

    Raises :class:`PlanningError` naming the line for a wrong length, a bad checksum, a
    line 1 without its line 2 (or the reverse), mismatched catalogue numbers, or elements
    SGP4 rejects. Sets of other satellites are skipped (logged at debug level).
    """
    from sgp4.api import Satrec

    lines = [(i + 1, ln.rstrip("\r\n").rstrip()) for i, ln in enumerate(text.splitlines())]
    lines = [(i, ln) for i, ln in lines if ln.strip()]
    out: list[TleSet] = []
    name, k = "", 0
    while k < len(lines):
        no, ln = lines[k]
        if not _TLE_LINE.match(ln):
            name = ln[2:].strip() if ln.startswith("0 ") else ln.strip()
            k += 1
            continue
        if ln[0] != "1":
            raise PlanningError(f"{source}: line {no}: TLE line 2 without a line 1 before it")
        _check_line(ln, "1", no, source)
        if k + 1 >= len(lines) or not lines[k + 1][1].startswith("2 "):
            raise PlanningError(f"{source}: line {no}: TLE line 1 is not followed by its "
                                "line 2")
        no2, ln2 = lines[k + 1]
        _check_line(ln2, "2", no2, source)
        if ln[2:7] != ln2[2:7]:
            raise PlanningError(f"{source}: line {no2}: catalogue number {ln2[2:7]!r} differs "
                                f"from line {no}'s {ln[2:7]!r}")
        try:
            sat = Satrec.twoline2rv(ln, ln2)
        except Exception as exc:  # sgp4 raises ValueError with its own wording
            raise PlanningError(f"{source}: line {no}: SGP4 rejects this element set: "
                                f"{exc}") from None
        norad = int(sat.satnum)
        m = _S2_NAME.search(name)
        satellite = NORAD_IDS.get(norad) or (f"S2{m.group(1).upper()}" if m else None)
        if satellite is None:
            log.debug("%s: line %d: skipping %r (NORAD %d), not Sentinel-2", source, no,
                      name, norad)
        else:
            epoch = pd.Timestamp(sat.jdsatepoch - 2440587.5 + sat.jdsatepochF, unit="D",
                                 tz="UTC").round("ms")
            out.append(TleSet(satellite, norad, name or satellite, ln, ln2, epoch, source, no))
        name, k = "", k + 2
    return out


def bundled_tle_paths() -> list[Path]:
    """The TLE files shipped in ``s2xr/data/tle`` (see the README there for provenance)."""
    root = resources.files("s2xr") / "data" / "tle"
    return sorted(Path(str(p)) for p in root.iterdir() if p.name.endswith(".tle"))


def read_tle(source: str | Path | None = None, *, timeout_s: float = 30.0) -> list[TleSet]:
    """Read Sentinel-2 element sets from a file, an ``http(s)://`` URL, or (None) every
    bundled file. Raises :class:`PlanningError` when none is a Sentinel-2 set."""
    if source is None:
        sets = [s for p in bundled_tle_paths() for s in parse_tle_text(p.read_text(), p.name)]
    elif str(source).startswith(("http://", "https://")):
        import requests

        try:
            resp = requests.get(str(source), timeout=timeout_s)
            resp.raise_for_status()
        except requests.RequestException as exc:
            raise PlanningError(f"cannot fetch TLEs from {source}: {exc}; set "
                                "planning.tle_path to a local file, or unset it to use the "
                                "bundled TLEs") from None
        sets = parse_tle_text(resp.text, str(source))
    else:
        path = Path(source)
        if not path.is_file():
            raise PlanningError(f"TLE file {path} does not exist; set planning.tle_path to a "
                                "file of Sentinel-2 element sets or unset it to use the "
                                "bundled ones")
        sets = parse_tle_text(path.read_text(errors="replace"), str(path))
    if not sets:
        raise PlanningError(f"{source or 'bundled TLEs'}: no Sentinel-2A/2B/2C element set "
                            f"(NORAD {sorted(NORAD_IDS)})")
    return sets


def select_tles(sets: Iterable[TleSet], when: pd.Timestamp) -> dict[str, TleSet]:
    """Per satellite, the element set whose epoch is nearest ``when``."""
    best: dict[str, TleSet] = {}
    for s in sets:
        cur = best.get(s.satellite)
        if cur is None or abs(s.epoch - when) < abs(cur.epoch - when):
            best[s.satellite] = s
    return dict(sorted(best.items()))


def warn_tle_age(tles: dict[str, TleSet], start: pd.Timestamp, end: pd.Timestamp,
                 max_age_days: float = 30.0) -> list[str]:
    """Log (and return) a warning per satellite whose epoch is more than ``max_age_days``
    from any predicted date."""
    out = []
    for sat, t in tles.items():
        age = max(abs(start - t.epoch), abs(end - t.epoch)) / pd.Timedelta(days=1)
        if age > max_age_days:
            msg = (f"{sat} TLE epoch {t.epoch:%Y-%m-%dT%H:%M:%SZ} ({t.source}) is {age:.0f} "
                   f"days from the predicted dates (limit {max_age_days:g}): pass times may be "
                   "off by minutes; set planning.tle_path to current elements (CelesTrak "
                   "GROUP=resource)")
            log.warning(msg)
            out.append(msg)
    return out


# --- propagation and passes -----------------------------------------------------------------


def propagate_ecef(tle: TleSet, times: pd.DatetimeIndex) -> tuple[np.ndarray, np.ndarray]:
    """Earth-fixed position (km) and velocity (km/s), each (3, N), at UTC ``times``."""
    from skyfield.sgp4lib import theta_GMST1982

    ns = pd.DatetimeIndex(times).tz_convert("UTC").asi8
    day_ns = 86_400 * 10**9
    days = ns // day_ns
    jd = 2440587.5 + days.astype(float)
    fr = (ns - days * day_ns) / day_ns
    err, r, v = tle.earth_satellite.model.sgp4_array(jd, fr)
    if np.any(err):
        bad = int(np.flatnonzero(err)[0])
        raise PlanningError(f"{tle.satellite} TLE ({tle.source} line {tle.line_no}) cannot be "
                            f"propagated to {pd.Timestamp(ns[bad], tz='UTC')} (SGP4 error "
                            f"{int(err[bad])}); use element sets nearer the dates")
    mid = _timescale().utc(pd.Timestamp(ns[len(ns) // 2], tz="UTC").to_pydatetime())
    dut1_days = float(mid.dut1) / 86400.0
    theta, theta_dot = theta_GMST1982(jd, fr + dut1_days)
    c, s = np.cos(theta), np.sin(theta)
    r, v = r.T, v.T
    rp = np.array([c * r[0] + s * r[1], -s * r[0] + c * r[1], r[2]])
    w = theta_dot / 86400.0
    vp = np.array([c * v[0] + s * v[1] + w * rp[1], -s * v[0] + c * v[1] - w * rp[0], v[2]])
    return rp, vp


def relative_orbit_from_anx(anx_lon_deg: np.ndarray | float) -> np.ndarray:
    """Relative orbit (1–143) of orbits whose ascending node is at ``anx_lon_deg``."""
    m = np.round(((ANX_LON_R1_DEG - np.asarray(anx_lon_deg)) % 360.0) /
                 (360.0 / N_RELATIVE_ORBITS)).astype(int) % N_RELATIVE_ORBITS
    return (_INV10_MOD143 * m) % N_RELATIVE_ORBITS + 1


@dataclass
class _Track:
    """A satellite's coarse Earth-fixed track over the horizon and its node crossings."""

    times: pd.DatetimeIndex
    r: np.ndarray
    v: np.ndarray
    anx_times: np.ndarray  # int64 ns
    anx_lon: np.ndarray


def _coarse_track(tle: TleSet, start: pd.Timestamp, end: pd.Timestamp,
                  step_s: float = 60.0) -> _Track:
    times = pd.date_range(start - pd.Timedelta(hours=2), end + pd.Timedelta(minutes=10),
                          freq=pd.Timedelta(seconds=step_s))
    r, v = propagate_ecef(tle, times)
    z = r[2]
    up = np.flatnonzero((z[:-1] < 0) & (z[1:] >= 0))
    f = -z[up] / (z[up + 1] - z[up])
    lon, _ = ecef_to_geodetic(r)
    dlon = (lon[up + 1] - lon[up] + 180.0) % 360.0 - 180.0
    anx_lon = (lon[up] + f * dlon + 180.0) % 360.0 - 180.0
    anx_t = times.asi8[up] + (f * step_s * 1e9).astype(np.int64)
    return _Track(times, r, v, anx_t, anx_lon)


def _abeam(tle: TleSet, t_mid: pd.Timestamp, pts: np.ndarray, half_s: int = 240,
           step_s: int = 2) -> tuple[np.ndarray, np.ndarray, float]:
    """For ground points ``pts`` (ECEF, (3, K)): the time each is abeam (ns since epoch,
    NaN if not within the span) and its signed cross-track distance (km, + left of the
    direction of flight = east on a descending pass); plus the satellite's z velocity
    (km/s) when the first point is abeam."""
    times = t_mid + pd.to_timedelta(np.arange(-half_s, half_s + 1, step_s), unit="s")
    r, v = propagate_ecef(tle, times)
    lon, lat = ecef_to_geodetic(r)
    g = geodetic_to_ecef(lon, lat)
    up = local_up(lon, lat)
    dg = np.gradient(g, axis=1)
    dg -= up * np.sum(dg * up, axis=0)
    a = dg / np.linalg.norm(dg, axis=0)
    c = np.cross(up.T, a.T).T  # up × forward = left
    d = pts[:, None, :] - g[:, :, None]  # (3, T, K)
    along = np.einsum("it,itk->tk", a, d)
    cross = np.einsum("it,itk->tk", c, d)
    t_ns = times.asi8.astype(float)
    k_n = pts.shape[1]
    when = np.full(k_n, np.nan)
    xt = np.full(k_n, np.nan)
    sign = (along[:-1] > 0) & (along[1:] <= 0)
    for k in range(k_n):
        idx = np.flatnonzero(sign[:, k])
        if idx.size:
            j = idx[0]
            f = along[j, k] / (along[j, k] - along[j + 1, k])
            when[k] = t_ns[j] + f * (t_ns[j + 1] - t_ns[j])
            xt[k] = cross[j, k] + f * (cross[j + 1, k] - cross[j, k])
    vz = float(np.interp(when[0], t_ns, v[2])) if np.isfinite(when[0]) else float(v[2].mean())
    return when, xt, vz


def predict_tle_passes(tiles: Sequence[str], start: pd.Timestamp, end: pd.Timestamp,
                       tles: dict[str, TleSet], *, daytime_only: bool = True
                       ) -> pd.DataFrame:
    """Descending (daylit) passes whose swath covers part of each tile, centre time in
    [start, end).

    Returns DataFrame[tile_id, satellite, sensing_start_utc, sensing_end_utc (first/last
    instant a footprint point is imaged, unpadded), centre_time_utc (tile centre abeam),
    relative_orbit (Int64), cross_track_km (tile centre from the ground track, + east on a
    descending pass), coverage (fraction of the footprint grid inside the swath),
    sun_elevation_deg (at the centre, then)].
    """
    rows: list[dict] = []
    half = SWATH_KM / 2
    points = {t: tile_sample_points(t) for t in tiles}
    for sat, tle in tles.items():
        track = _coarse_track(tle, start, end)
        for tile, (lon, lat) in points.items():
            pts = geodetic_to_ecef(lon, lat)
            dist = np.linalg.norm(track.r - pts[:, :1] * (np.linalg.norm(track.r, axis=0) /
                                  np.linalg.norm(pts[:, 0])), axis=0)
            cand = np.flatnonzero((dist[1:-1] <= dist[:-2]) & (dist[1:-1] < dist[2:]) &
                                  (dist[1:-1] < 900.0)) + 1
            for i in cand:
                if daytime_only and track.v[2, i] > 2.0:  # clearly ascending (night side)
                    continue
                when, xt, vz = _abeam(tle, track.times[i], pts)
                if np.isnan(when[0]):
                    continue
                centre = pd.Timestamp(int(when[0]), tz="UTC")
                if not start <= centre < end:
                    continue
                inside = np.isfinite(when[1:]) & (np.abs(xt[1:]) <= half)
                if not inside.any():
                    continue
                sun = float(sun_elevation_deg(pd.DatetimeIndex([centre]), lon[0], lat[0])[0])
                if daytime_only and (vz >= 0 or sun <= MIN_SUN_ELEVATION_DEG):
                    continue
                k = np.searchsorted(track.anx_times, centre.value) - 1
                orbit = int(relative_orbit_from_anx(track.anx_lon[k])) if k >= 0 else pd.NA
                w = when[1:][inside]
                rows.append({
                    "tile_id": tile, "satellite": sat,
                    "sensing_start_utc": pd.Timestamp(int(w.min()), tz="UTC"),
                    "sensing_end_utc": pd.Timestamp(int(w.max()), tz="UTC"),
                    "centre_time_utc": centre, "relative_orbit": orbit,
                    "cross_track_km": round(float(xt[0]), 2),
                    "coverage": round(float(inside.mean()), 3),
                    "sun_elevation_deg": round(sun, 2),
                })
    df = pd.DataFrame(rows, columns=list(PASS_COLUMNS))
    for c in ("sensing_start_utc", "sensing_end_utc", "centre_time_utc"):
        df[c] = pd.to_datetime(df[c], utc=True).dt.round("ms")
    df["relative_orbit"] = df["relative_orbit"].astype("Int64")
    return df.sort_values(["centre_time_utc", "tile_id"], ignore_index=True)
