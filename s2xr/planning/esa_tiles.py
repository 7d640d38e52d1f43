"""ESA acquisition-plan segments → per-tile sensing windows (:func:`esa_windows`).

A KML segment's swath polygon has the nadir point at the segment start as its first vertex
and the nadir point at its stop half-way round the ring (see :mod:`s2xr.planning.esa`): the
segment is narrowed to a tile's along-track extent from that nadir track. CSV rows carry no
polygon: a row with a tile gives that tile's window, a row with only a relative orbit is
placed on tiles with the TLE passes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd
from shapely import STRtree
from shapely.affinity import translate
from shapely.geometry import LineString, MultiPolygon, Point, Polygon

from s2xr.grid import tile_footprint
from s2xr.planning.earth import WGS84_E2, tile_sample_points
from s2xr.planning.esa import EsaPlan
from s2xr.planning.tle import CYCLE_DAYS, INCLINATION_DEG, TleSet, predict_tle_passes

log = logging.getLogger(__name__)

WINDOW_COLUMNS = ("tile_id", "satellite", "sensing_start_utc", "sensing_end_utc",
                  "centre_time_utc", "relative_orbit", "cross_track_km", "coverage",
                  "plan_id", "plan_start_utc", "plan_end_utc")
_KM_PER_DEG = 111.195


def _u(lat_deg: np.ndarray, descending: bool) -> np.ndarray:
    """Argument of latitude (rad) on the nominal orbit where the ground track is at
    geodetic latitude ``lat_deg``."""
    lat_c = np.arctan((1 - WGS84_E2) * np.tan(np.radians(lat_deg)))
    s = np.clip(np.sin(lat_c) / np.sin(np.radians(INCLINATION_DEG)), -1, 1)
    return np.pi - np.arcsin(s) if descending else np.arcsin(s)


class _AlongTrack:
    """Maps ground points to the fraction (0 at start, 1 at stop) of a segment's duration at
    which they are abeam, from the nadir track read off the swath polygon (lon scaled by
    cos(lat0), so distances are local)."""

    def __init__(self, geom: Polygon | MultiPolygon, lat0: float):
        self.k = np.cos(np.radians(lat0))
        poly = geom if isinstance(geom, Polygon) else max(geom.geoms, key=lambda g: g.area)
        pts = np.asarray(poly.exterior.coords)[:, :2]
        keep = np.r_[True, np.any(np.abs(np.diff(pts, axis=0)) > 1e-9, axis=1)]
        pts = pts[keep]
        if len(pts) > 1 and np.allclose(pts[0], pts[-1]):
            pts = pts[:-1]
        n = len(pts)
        nadir = None
        if n >= 6 and n % 2 == 0:
            h = n // 2
            mids = [(pts[i] + pts[n - i]) / 2 for i in range(1, h)]
            if np.hypot(*(pts[0] - mids[0])) < 1.0 and np.hypot(*(pts[h] - mids[-1])) < 1.0:
                nadir = np.array([pts[0], *mids[1:-1], pts[h]])
        self.structured = nadir is not None
        if nadir is None:  # not ESA's ring layout: a N→S strip, timed by latitude only
            lo = pts[:, 0].mean()
            nadir = np.array([[lo, pts[:, 1].max()], [lo, pts[:, 1].min()]])
        self.descending = bool(nadir[0, 1] >= nadir[-1, 1])
        xy = np.c_[nadir[:, 0] * self.k, nadir[:, 1]]
        base = LineString(xy)
        self.length = max(base.length, 1e-12)
        # extend both ends by 3° so points near an end project onto the track, not its tip
        d0 = (xy[0] - xy[1]) / max(np.hypot(*(xy[0] - xy[1])), 1e-12)
        d1 = (xy[-1] - xy[-2]) / max(np.hypot(*(xy[-1] - xy[-2])), 1e-12)
        self.ext = 3.0
        self.line = LineString(np.vstack([xy[0] + 3.0 * d0, xy, xy[-1] + 3.0 * d1]))
        self.use_u = bool(np.abs(nadir[:, 1]).max() < 78.0)
        self.u0, self.u1 = _u(nadir[[0, -1], 1], self.descending)

    def fraction(self, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        out = []
        for x, y in zip(np.asarray(lon) * self.k, np.asarray(lat), strict=True):
            d = self.line.project(Point(x, y))
            if self.use_u and abs(self.u1 - self.u0) > 1e-9:
                foot_lat = self.line.interpolate(d).y
                out.append((_u(np.array(foot_lat), self.descending) - self.u0) /
                           (self.u1 - self.u0))
            else:
                out.append((d - self.ext) / self.length)
        return np.clip(np.asarray(out, float), 0.0, 1.0)

    def cross_track_km(self, lon: float, lat: float) -> float:
        """Signed distance of a point from the nadir track (+ left of the direction of
        flight); NaN when the polygon is not in ESA's layout."""
        if not self.structured:
            return float("nan")
        p = Point(lon * self.k, lat)
        d = self.line.project(p)
        a = self.line.interpolate(max(d - 1e-3, 0.0))
        b = self.line.interpolate(min(d + 1e-3, self.line.length))
        f = self.line.interpolate(d)
        side = (b.x - a.x) * (p.y - f.y) - (b.y - a.y) * (p.x - f.x)
        return float(np.sign(side) * p.distance(f) * _KM_PER_DEG)


def _shifted(fp: Polygon | MultiPolygon) -> list[tuple[float, Polygon | MultiPolygon]]:
    return [(0.0, fp), (360.0, translate(fp, 360.0)), (-360.0, translate(fp, -360.0))]


def esa_windows(plan: EsaPlan, tiles: Sequence[str], start: pd.Timestamp, end: pd.Timestamp,
                *, modes: Sequence[str] = ("NOBS",), tles: dict[str, TleSet] | None = None,
                satellites: Sequence[str] | None = None) -> pd.DataFrame:
    """Per tile, the plan's segments (``modes`` only) whose swath covers part of it, in
    [start, end) by sensing time.

    Returns DataFrame[tile_id, satellite, sensing_start_utc, sensing_end_utc (the segment's
    ObservationTimeStart/Stop narrowed to the tile's along-track extent), centre_time_utc
    (tile centre abeam), relative_orbit, cross_track_km (tile centre from the nadir track,
    + east on a descending pass), coverage (footprint area fraction inside the swath),
    plan_id, plan_start_utc, plan_end_utc]. CSV rows with a tile give that tile's window;
    CSV rows with only a relative orbit are placed with the TLE passes (``tles``).
    """
    seg = plan.segments
    seg = seg[seg["mode"].str.upper().isin([m.upper() for m in modes])]
    if satellites is not None:
        seg = seg[seg["satellite"].isin(list(satellites))]
    seg = seg[(seg["end_time_utc"] >= start) & (seg["start_time_utc"] < end)]
    rows: list[dict] = []
    geo = seg[seg["geometry"].notna()].reset_index(drop=True)
    tree = STRtree(list(geo["geometry"])) if len(geo) else None
    for tile in tiles:
        fp = tile_footprint(tile)
        lon_c, lat_c = (float(v[0]) for v in tile_sample_points(tile, n=1))
        if tree is None:  # no segment with a swath polygon
            continue
        for shift, fps in _shifted(fp):
            for j in tree.query(fps, predicate="intersects"):
                s = geo.iloc[int(j)]
                inter = fps.intersection(s["geometry"])
                cover = inter.area / fps.area
                if inter.is_empty or cover < 1e-4:
                    continue
                model = _AlongTrack(s["geometry"], lat_c)
                ring = inter.segmentize(0.02)
                xy = np.concatenate([np.asarray(g.exterior.coords) for g in
                                     getattr(ring, "geoms", [ring]) if hasattr(g, "exterior")])
                fr = model.fraction(xy[:, 0], xy[:, 1])
                fc = model.fraction(np.array([lon_c + shift]), np.array([lat_c]))[0]
                dur = s["end_time_utc"] - s["start_time_utc"]
                rows.append({"tile_id": tile, "satellite": s["satellite"],
                             "sensing_start_utc": s["start_time_utc"] + fr.min() * dur,
                             "sensing_end_utc": s["start_time_utc"] + fr.max() * dur,
                             "centre_time_utc": s["start_time_utc"] + fc * dur,
                             "relative_orbit": s["relative_orbit"],
                             "cross_track_km": round(model.cross_track_km(lon_c + shift,
                                                                          lat_c), 2),
                             "coverage": round(float(cover), 3), "plan_id": s["plan_id"],
                             "plan_start_utc": s["start_time_utc"],
                             "plan_end_utc": s["end_time_utc"]})
    rows += _csv_windows(seg[seg["geometry"].isna()], tiles, tles)
    df = pd.DataFrame(rows, columns=list(WINDOW_COLUMNS))
    for c in ("sensing_start_utc", "sensing_end_utc", "centre_time_utc", "plan_start_utc",
              "plan_end_utc"):
        df[c] = pd.to_datetime(df[c], utc=True).dt.round("ms")
    df["relative_orbit"] = df["relative_orbit"].astype("Int64")
    df = df[(df["centre_time_utc"] >= start) & (df["centre_time_utc"] < end)]
    return df.sort_values(["centre_time_utc", "tile_id"], ignore_index=True)


def _csv_windows(rows: pd.DataFrame, tiles: Sequence[str], tles: dict[str, TleSet] | None
                 ) -> list[dict]:
    """CSV plan rows → windows: a row with a tile gives its own window; a row with only a
    relative orbit is matched to the TLE pass of that satellite and orbit on that UTC day,
    predicted a whole number of 10-day cycles nearer the TLE epoch and shifted back (the
    ground track repeats every cycle)."""
    out: list[dict] = []
    wanted = set(tiles)
    for _, r in rows.iterrows():
        base = {"satellite": r["satellite"], "plan_id": r["plan_id"],
                "plan_start_utc": r["start_time_utc"], "plan_end_utc": r["end_time_utc"]}
        if r["tile_id"]:
            if r["tile_id"] in wanted:
                mid = r["start_time_utc"] + (r["end_time_utc"] - r["start_time_utc"]) / 2
                out.append({**base, "tile_id": r["tile_id"],
                            "sensing_start_utc": r["start_time_utc"],
                            "sensing_end_utc": r["end_time_utc"], "centre_time_utc": mid,
                            "relative_orbit": r["relative_orbit"], "cross_track_km": np.nan,
                            "coverage": np.nan})
            continue
        if tles is None or r["satellite"] not in tles or pd.isna(r["relative_orbit"]):
            log.warning("%s: no TLE for %s to place this plan row on tiles; skipped",
                        r["plan_id"], r["satellite"])
            continue
        tle = tles[r["satellite"]]
        day = r["start_time_utc"].floor("D")
        cycles = round((tle.epoch - day) / pd.Timedelta(days=CYCLE_DAYS))
        shift = pd.Timedelta(days=CYCLE_DAYS * cycles)
        passes = predict_tle_passes(list(tiles), day + shift, day + shift + pd.Timedelta(days=1),
                                    {r["satellite"]: tle})
        passes = passes[passes["relative_orbit"] == r["relative_orbit"]]
        for p in passes.itertuples():
            out.append({**base, "tile_id": p.tile_id,
                        "sensing_start_utc": p.sensing_start_utc - shift,
                        "sensing_end_utc": p.sensing_end_utc - shift,
                        "centre_time_utc": p.centre_time_utc - shift,
                        "relative_orbit": p.relative_orbit, "cross_track_km": p.cross_track_km,
                        "coverage": p.coverage})
    return out
