"""ESA Sentinel-2 acquisition plans (KML as ESA publishes them, or CSV exports).

An ESA plan KML holds one ``Placemark`` per planned data-take segment, in folders
``S2x / Mode / Timeliness``; each has ExtendedData ``ID``, ``Timeliness``, ``Station``,
``Mode`` (NOBS = nominal observation, also VIC, DARK-O, SUN, RAW, ...),
``ObservationTimeStart``/``Stop`` (UTC, no ``Z``), ``ObservationDuration`` (ms),
``OrbitAbsolute``, ``OrbitRelative``, ``Scenes`` and the swath polygon (lon,lat,0). The
polygon's first vertex is the nadir point at the segment start and the vertex half-way round
the ring is the nadir point at its stop (verified on all 758 placemarks of a real plan);
:func:`esa_windows` uses that to narrow a segment to a tile's along-track extent.

Sentinel-2 images land, coasts and closed seas, not the open ocean: a tile outside every
swath polygon gets no window in ESA mode, which is the point of reading the plan.
"""

from __future__ import annotations

import gzip
import io
import logging
import re
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree as ET

import numpy as np
import pandas as pd
from shapely import STRtree
from shapely.affinity import translate
from shapely.geometry import LineString, MultiPolygon, Point, Polygon
from shapely.validation import make_valid

from s2xr.errors import PlanningError
from s2xr.grid import tile_footprint
from s2xr.planning.tle import INCLINATION_DEG, WGS84_E2, TleSet, tile_sample_points

log = logging.getLogger(__name__)

SEGMENT_COLUMNS = ("satellite", "plan_id", "mode", "timeliness", "station", "start_time_utc",
                   "end_time_utc", "orbit_absolute", "relative_orbit", "scenes", "tile_id",
                   "source", "geometry")
WINDOW_COLUMNS = ("tile_id", "satellite", "sensing_start_utc", "sensing_end_utc",
                  "centre_time_utc", "relative_orbit", "cross_track_km", "coverage",
                  "plan_id", "plan_start_utc", "plan_end_utc")
_SAT = re.compile(r"(?<![A-Z0-9])S(?:ENTINEL)?[-_ ]?2([A-D])(?![A-Z0-9])", re.IGNORECASE)
_COVER = re.compile(r"from\s+(\d{8}T\d{6})\s+to\s+(\d{8}T\d{6})", re.IGNORECASE)
_KM_PER_DEG = 111.195


@dataclass
class EsaPlan:
    """Planned segments (DataFrame[SEGMENT_COLUMNS], ``geometry`` a shapely Polygon in
    lon/lat — longitudes may run past ±180 as ESA writes them — or None for CSV rows) and
    the span each satellite's plan covers."""

    segments: pd.DataFrame
    coverage: dict[str, tuple[pd.Timestamp, pd.Timestamp]] = field(default_factory=dict)
    sources: tuple[str, ...] = ()

    def covers(self, satellite: str, start: pd.Timestamp, end: pd.Timestamp
               ) -> tuple[pd.Timestamp, pd.Timestamp] | None:
        """The part of [start, end) this plan covers for ``satellite`` (None if none)."""
        span = self.coverage.get(satellite)
        if span is None:
            return None
        a, b = max(start, span[0]), min(end, span[1])
        return (a, b) if a < b else None

    def describe(self) -> str:
        spans = ", ".join(f"{s} {a:%Y-%m-%d %H:%M}–{b:%Y-%m-%d %H:%M}"
                          for s, (a, b) in sorted(self.coverage.items()))
        return f"{len(self.segments)} segment(s) from {', '.join(self.sources)} ({spans})"


def _utc(value: str | None) -> pd.Timestamp | None:
    if value is None or not str(value).strip():
        return None
    t = pd.Timestamp(str(value).strip())
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


def _satellite_of(*texts: str) -> str | None:
    for text in texts:
        m = _SAT.search(text or "")
        if m:
            return f"S2{m.group(1).upper()}"
    return None


def _unwrap(lons: list[float]) -> list[float]:
    out = [lons[0]]
    for lon in lons[1:]:
        d = (lon - out[-1] + 180.0) % 360.0 - 180.0
        out.append(out[-1] + d)
    return out


def _polygon(pm: ET.Element) -> Polygon | MultiPolygon | None:
    rings = []
    for coords in pm.iter("coordinates"):
        pts = [tuple(float(v) for v in tok.split(",")[:2]) for tok in (coords.text or "").split()]
        if len(pts) >= 3:
            lons = _unwrap([p[0] for p in pts])
            rings.append(Polygon(zip(lons, [p[1] for p in pts], strict=True)))
    if not rings:
        return None
    geom = rings[0] if len(rings) == 1 else MultiPolygon(rings)
    if geom.is_valid:
        return geom
    parts = [g for g in getattr(make_valid(geom), "geoms", [make_valid(geom)])
             if isinstance(g, Polygon | MultiPolygon)]
    polys = [p for g in parts for p in getattr(g, "geoms", [g])]
    return (polys[0] if len(polys) == 1 else MultiPolygon(polys)) if polys else None


def _walk(el: ET.Element, folders: tuple[str, ...]):
    for child in el:
        if child.tag in ("Document", "Folder"):
            yield from _walk(child, (*folders, child.findtext("name") or ""))
        elif child.tag == "Placemark":
            yield folders, child


def parse_esa_kml(data: bytes, source: str = "<kml>") -> EsaPlan:
    """Parse an ESA acquisition-plan KML → :class:`EsaPlan` (every mode kept; filter later).

    Raises :class:`PlanningError` when the bytes are not XML, not KML, or KML without the
    ESA ExtendedData (ObservationTimeStart/Stop, Mode) in any Placemark.
    """
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise PlanningError(f"{source} is not valid XML ({exc}); an ESA acquisition plan is "
                            "a KML file from sentinels.copernicus.eu (Sentinel-2 acquisition "
                            "plans)") from None
    for el in root.iter():
        if isinstance(el.tag, str) and "}" in el.tag:
            el.tag = el.tag.split("}", 1)[1]
    if root.tag != "kml":
        raise PlanningError(f"{source}: root element is <{root.tag}>, not <kml>: not an ESA "
                            "acquisition plan")
    doc_name = root.findtext("Document/name") or ""
    rows, n_pm = [], 0
    for folders, pm in _walk(root, ()):
        n_pm += 1
        data_ = {d.get("name"): (d.findtext("value") or "").strip()
                 for d in pm.iter("Data") if d.get("name")}
        start = _utc(data_.get("ObservationTimeStart") or pm.findtext("TimeSpan/begin"))
        stop = _utc(data_.get("ObservationTimeStop") or pm.findtext("TimeSpan/end"))
        if "Mode" not in data_ or start is None or stop is None:
            continue
        sat = _satellite_of(*folders, pm.findtext("styleUrl") or "", source, doc_name)
        if sat is None:
            raise PlanningError(f"{source}: Placemark {data_.get('ID')!r}: cannot tell the "
                                "satellite (no S2A/S2B/S2C folder, style or file name)")
        geom = _polygon(pm)
        if geom is None:
            log.debug("%s: Placemark %s has no polygon; skipped", source, data_.get("ID"))
            continue

        def _int(key: str, d=data_) -> int | None:
            v = d.get(key)
            return int(v) if v and v.lstrip("-").isdigit() else None

        rows.append({"satellite": sat, "plan_id": data_.get("ID") or pm.findtext("name"),
                     "mode": data_["Mode"], "timeliness": data_.get("Timeliness"),
                     "station": data_.get("Station"), "start_time_utc": start,
                     "end_time_utc": stop, "orbit_absolute": _int("OrbitAbsolute"),
                     "relative_orbit": _int("OrbitRelative"), "scenes": _int("Scenes"),
                     "tile_id": None, "source": source, "geometry": geom})
    if not rows:
        raise PlanningError(f"{source}: not an ESA acquisition plan — {n_pm} Placemark(s), "
                            "none with ExtendedData ObservationTimeStart/ObservationTimeStop/"
                            "Mode and a swath Polygon; download the Sentinel-2 plan KML from "
                            "sentinels.copernicus.eu")
    seg = _frame(rows)
    m = _COVER.search(doc_name)
    coverage = {}
    for sat, g in seg.groupby("satellite"):
        span = (g["start_time_utc"].min(), g["end_time_utc"].max())
        if m:
            span = (_utc(m.group(1)), _utc(m.group(2)))
        coverage[str(sat)] = span
    modes = seg["mode"].value_counts().to_dict()
    log.info("%s: %d segment(s) by mode %s", source, len(seg), modes)
    return EsaPlan(seg, coverage, (source,))


def _frame(rows: list[dict]) -> pd.DataFrame:
    seg = pd.DataFrame(rows, columns=list(SEGMENT_COLUMNS))
    for c in ("orbit_absolute", "relative_orbit", "scenes"):
        seg[c] = seg[c].astype("Int64")
    for c in ("start_time_utc", "end_time_utc"):
        seg[c] = pd.to_datetime(seg[c], utc=True)
    return seg


_CSV_KEYS = {
    "start": ("observationtimestart", "starttimeutc", "start", "starttime", "acquisitiondate",
              "date", "sensingtime", "datetime"),
    "stop": ("observationtimestop", "endtimeutc", "end", "stop", "endtime"),
    "satellite": ("platform", "satellite", "mission", "spacecraft"),
    "orbit": ("orbitrelative", "relativeorbit", "orbit", "relorbit"),
    "tile": ("tileid", "tile", "mgrs", "mgrstile"),
    "mode": ("mode",),
}


def parse_plan_csv(data: bytes, source: str = "<csv>") -> EsaPlan:
    """Parse a CSV export of a plan → :class:`EsaPlan` without geometry.

    Columns (case, spaces and ``_`` ignored): a time (``ObservationTimeStart``,
    ``start_time_utc``, ``Acquisition Date``, ...), optional stop time, satellite
    (``Platform``: S2A or Sentinel-2A), and either ``tile_id`` or the relative orbit
    (``OrbitRelative``/``Orbit``); rows with a ``Mode`` other than NOBS are kept but
    filtered like KML rows. Rows without a tile are placed on tiles by :func:`esa_windows`
    through the TLE (same satellite, same relative orbit, same day).
    """
    try:
        df = pd.read_csv(io.BytesIO(data), dtype=str)
    except Exception as exc:
        raise PlanningError(f"{source}: cannot read as CSV ({exc})") from None
    norm = {re.sub(r"[\s_#\-]", "", c.lower()): c for c in df.columns}
    col = {k: next((norm[a] for a in names if a in norm), None) for k, names in
           _CSV_KEYS.items()}
    missing = [k for k in ("start", "satellite") if col[k] is None]
    if missing or (col["tile"] is None and col["orbit"] is None):
        raise PlanningError(f"{source}: not an acquisition-plan CSV — need a time column "
                            "(ObservationTimeStart / start_time_utc / Acquisition Date), a "
                            "satellite column (Platform / satellite) and tile_id or "
                            f"OrbitRelative; found columns {list(df.columns)}")
    rows = []
    for i, r in df.iterrows():
        line = int(i) + 2
        sat = _satellite_of(str(r[col["satellite"]]))
        try:
            start = _utc(r[col["start"]])
            stop = _utc(r[col["stop"]]) if col["stop"] else None
        except (ValueError, TypeError):
            raise PlanningError(f"{source}: line {line}: {col['start']} "
                                f"{r[col['start']]!r} is not a date/time") from None
        if sat is None or start is None:
            raise PlanningError(f"{source}: line {line}: satellite {r[col['satellite']]!r} "
                                "or time missing/unknown (use S2A, S2B, S2C)")
        orbit = r[col["orbit"]] if col["orbit"] else None
        tile = r[col["tile"]] if col["tile"] else None
        rows.append({"satellite": sat, "plan_id": f"{Path(source).name}:{line}",
                     "mode": (r[col["mode"]] if col["mode"] else "NOBS"),
                     "timeliness": None, "station": None, "start_time_utc": start,
                     "end_time_utc": stop if stop is not None else start,
                     "orbit_absolute": None,
                     "relative_orbit": int(orbit) if orbit and str(orbit).isdigit() else None,
                     "scenes": None,
                     "tile_id": str(tile).strip().upper().lstrip("T") if tile else None,
                     "source": source, "geometry": None})
    seg = _frame(rows)
    coverage = {str(s): (g["start_time_utc"].min().floor("D"),
                         g["end_time_utc"].max().floor("D") + pd.Timedelta(days=1))
                for s, g in seg.groupby("satellite")}
    return EsaPlan(seg, coverage, (source,))


def read_esa_plan(source: str | Path) -> EsaPlan:
    """Read a plan file (``.kml``, ``.kml.gz``, ``.kmz`` or ``.csv``, told apart by content)
    or an ``http(s)://`` URL (see :func:`fetch_esa_plan`)."""
    if str(source).startswith(("http://", "https://")):
        return fetch_esa_plan(str(source))
    path = Path(source)
    if not path.is_file():
        raise PlanningError(f"ESA plan {path} does not exist; set planning.esa_plan_path to a "
                            "plan KML/CSV (or a folder of them)")
    return parse_esa_plan_bytes(path.read_bytes(), str(path))


def parse_esa_plan_bytes(data: bytes, source: str) -> EsaPlan:
    """Dispatch on content: gzip, KMZ (zip), XML/KML, else CSV."""
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    if data[:2] == b"PK":
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            kml = [n for n in z.namelist() if n.lower().endswith(".kml")]
            if not kml:
                raise PlanningError(f"{source}: KMZ without a .kml inside")
            data = z.read(kml[0])
    if data.lstrip()[:1] == b"<":
        return parse_esa_kml(data, source)
    return parse_plan_csv(data, source)


def fetch_esa_plan(url: str, timeout_s: float = 60.0) -> EsaPlan:
    """Download and parse a plan. Raises :class:`PlanningError` on any network error."""
    import requests

    try:
        resp = requests.get(url, timeout=timeout_s)
        resp.raise_for_status()
    except requests.RequestException as exc:
        raise PlanningError(f"cannot fetch ESA plan {url}: {exc}") from None
    return parse_esa_plan_bytes(resp.content, url)


def merge_plans(plans: Sequence[EsaPlan]) -> EsaPlan | None:
    """One plan from several (per satellite, the coverage spans are merged)."""
    plans = [p for p in plans if p is not None]
    if not plans:
        return None
    seg = pd.concat([p.segments for p in plans], ignore_index=True)
    cov: dict[str, tuple[pd.Timestamp, pd.Timestamp]] = {}
    for p in plans:
        for s, (a, b) in p.coverage.items():
            cov[s] = (min(a, cov[s][0]), max(b, cov[s][1])) if s in cov else (a, b)
    return EsaPlan(seg, cov, tuple(x for p in plans for x in p.sources))


def load_esa_plans(path_spec: str | None, urls: Sequence[str] = ()) -> EsaPlan | None:
    """Plans from ``path_spec`` (a file, a folder of ``*.kml``/``*.kml.gz``/``*.kmz``/
    ``*.csv``, or a comma-separated list) and ``urls``. A local path that fails raises; a
    URL that fails only logs a warning (fetching is never required). None when nothing."""
    plans: list[EsaPlan] = []
    for part in [p.strip() for p in (path_spec or "").split(",") if p.strip()]:
        p = Path(part)
        if p.is_dir():
            files = sorted(f for f in p.iterdir() if f.is_file() and
                           f.name.lower().endswith((".kml", ".kml.gz", ".kmz", ".csv")))
            if not files:
                raise PlanningError(f"ESA plan folder {p} has no .kml/.kml.gz/.kmz/.csv file")
            plans += [read_esa_plan(f) for f in files]
        else:
            plans.append(read_esa_plan(part))
    for url in urls:
        try:
            plans.append(fetch_esa_plan(url))
        except PlanningError as exc:
            log.warning("%s; continuing without it", exc)
    return merge_plans(plans)


# --- windows per tile ---------------------------------------------------------------------


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
        for shift, fps in _shifted(fp) if tree is not None else []:
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
    from s2xr.planning.tle import CYCLE_DAYS, predict_tle_passes

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
