"""ESA Sentinel-2 acquisition plans (KML as ESA publishes them, or CSV exports).

An ESA plan KML holds one ``Placemark`` per planned data-take segment, in folders
``S2x / Mode / Timeliness``; each has ExtendedData ``ID``, ``Timeliness``, ``Station``,
``Mode`` (NOBS = nominal observation, also VIC, DARK-O, SUN, RAW, ...),
``ObservationTimeStart``/``Stop`` (UTC, no ``Z``), ``ObservationDuration`` (ms),
``OrbitAbsolute``, ``OrbitRelative``, ``Scenes`` and the swath polygon (lon,lat,0). The
polygon's first vertex is the nadir point at the segment start and the vertex half-way round
the ring is the nadir point at its stop (verified on all 758 placemarks of a real plan);
:func:`~s2xr.planning.esa_tiles.esa_windows` uses that to narrow a segment to a tile's
along-track extent.

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

import pandas as pd
from shapely.geometry import MultiPolygon, Polygon
from shapely.validation import make_valid

from s2xr.errors import PlanningError
from s2xr.planning.esa_satellite import infer_satellites

log = logging.getLogger(__name__)

SEGMENT_COLUMNS = ("satellite", "plan_id", "mode", "timeliness", "station", "start_time_utc",
                   "end_time_utc", "orbit_absolute", "relative_orbit", "scenes", "tile_id",
                   "source", "geometry")
_SAT = re.compile(r"(?<![A-Z0-9])S(?:ENTINEL)?[-_ ]?2([A-D])(?![A-Z0-9])", re.IGNORECASE)
_COVER = re.compile(r"from\s+(\d{8}T\d{6})\s+to\s+(\d{8}T\d{6})", re.IGNORECASE)


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
              "date", "sensingtime", "datetime", "startutc"),
    "stop": ("observationtimestop", "endtimeutc", "end", "stop", "endtime", "endutc"),
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

    A plan without a satellite column, or with a generic one (the predecessor's ``S2``):
    the satellite named in the file name (``S2A_plan.csv``) if there is one, else, for rows
    with a tile, the one whose pass over the tile falls in the row's window
    (:func:`~s2xr.planning.esa_satellite.infer_satellites`); a row that neither tells raises
    :class:`PlanningError` asking for a satellite column or a file name naming it.
    """
    try:
        df = pd.read_csv(io.BytesIO(data), dtype=str)
    except Exception as exc:
        raise PlanningError(f"{source}: cannot read as CSV ({exc})") from None
    norm = {re.sub(r"[\s_#\-]", "", c.lower()): c for c in df.columns}
    col = {k: next((norm[a] for a in names if a in norm), None) for k, names in
           _CSV_KEYS.items()}
    if col["start"] is None or (col["tile"] is None and col["orbit"] is None):
        raise PlanningError(f"{source}: not an acquisition-plan CSV — need a time column "
                            "(ObservationTimeStart / start_time_utc / Acquisition Date), "
                            "tile_id or OrbitRelative, and a satellite column (Platform / "
                            f"satellite) or file name; found columns {list(df.columns)}")
    named = _satellite_of(Path(source).name)
    rows = []
    for i, r in df.iterrows():
        line = int(i) + 2
        sat = _satellite_of(str(r[col["satellite"]])) if col["satellite"] else None
        try:
            start = _utc(r[col["start"]])
            stop = _utc(r[col["stop"]]) if col["stop"] else None
        except (ValueError, TypeError):
            raise PlanningError(f"{source}: line {line}: {col['start']} "
                                f"{r[col['start']]!r} is not a date/time") from None
        if start is None:
            raise PlanningError(f"{source}: line {line}: {col['start']} is empty")
        orbit = r[col["orbit"]] if col["orbit"] else None
        tile = r[col["tile"]] if col["tile"] else None
        rows.append({"satellite": sat or named, "plan_id": f"{Path(source).name}:{line}",
                     "mode": (r[col["mode"]] if col["mode"] else "NOBS"),
                     "timeliness": None, "station": None, "start_time_utc": start,
                     "end_time_utc": stop if stop is not None else start,
                     "orbit_absolute": None,
                     "relative_orbit": int(orbit) if orbit and str(orbit).isdigit() else None,
                     "scenes": None,
                     "tile_id": str(tile).strip().upper().lstrip("T") if tile else None,
                     "source": source, "geometry": None})
    seg = _frame(rows)
    _fill_satellites(seg, df, col["satellite"], source)
    coverage = {str(s): (g["start_time_utc"].min().floor("D"),
                         g["end_time_utc"].max().floor("D") + pd.Timedelta(days=1))
                for s, g in seg.groupby("satellite")}
    return EsaPlan(seg, coverage, (source,))


def _fill_satellites(seg: pd.DataFrame, raw: pd.DataFrame, sat_col: str | None,
                     source: str) -> None:
    """Fill the rows of ``seg`` without a satellite from the TLE passes, in place; raise
    :class:`PlanningError` for those it cannot tell."""
    todo = seg["satellite"].isna()
    if not todo.any():
        return
    placeable = todo & seg["tile_id"].notna()
    seg.loc[placeable, "satellite"] = infer_satellites(seg.loc[placeable])
    left = seg.index[seg["satellite"].isna()]
    if not len(left):
        return
    what = (f"its {sat_col} column says {sorted(set(raw[sat_col].fillna('')))[:3]}"
            if sat_col else "it has no satellite column")
    first = seg.loc[left[0]]
    where = (f"tile {first['tile_id']}" if first["tile_id"] else
             f"relative orbit {first['relative_orbit']}")
    raise PlanningError(
        f"{source}: cannot tell which Sentinel-2 satellite {len(left)} of {len(seg)} plan "
        f"row(s) are for: {what}, and the orbits do not tell (no S2A/S2B/S2C pass over the "
        "row's tile in its window, or no TLE within 180 days of its date; first: line "
        f"{first['plan_id'].rsplit(':', 1)[-1]}, {where}, "
        f"{first['start_time_utc']:%Y-%m-%d %H:%M}–{first['end_time_utc']:%H:%M} UTC); add "
        "a satellite column with S2A, S2B or S2C, or name the satellite in the file name "
        "(e.g. S2A_acquisition_plan.csv)")


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
