"""The Sentinel-2 tiling grid, computed offline from tile IDs (no server, no data file).

A Sentinel-2 tile is a 109.8 km square on the UTM grid named after the MGRS 100 km square
it starts from (``39QTA``: zone 39, latitude band Q, square T-A). Its upper-left corner is the
square's north-west corner snapped to 60 m: ``x = floor(E_west / 60)·60`` and
``y = ceil(N_north / 60)·60`` (northing relative to the equator, so southern tiles snap
towards it). Verified against real Earth Search items (39QTA → 199980, 2100000 in
EPSG:32639; 22MHD → 799980, 9900040 in EPSG:32722; 01WCR → 300000, 7600020) and against
every tile of ESA's official tiling grid (``tests/test_grid_official.py``).

Which squares exist — the rules, derived from ESA's grid file
(``S2A_OPER_GIP_TILPAR_MPC__20151209T095117_V20150622T000000_21000101T000000_B00.kml``, 56,686
tiles) and checked against it square by square:

1. **Band letter** = the latitude band of the 100 km square's centre, with band C reaching
   down and band X up without limit. A square straddling two bands has one ID only.
2. **Latitude span**: a northern square exists while its southern edge lies below 84° N (so
   squares whose centre lies above 84° N exist: 01XDP, 59XNP); a southern one while its
   centre lies at or north of 84° S. Northern-band tiles reach 9,780 m south of the equator
   (a 109.8 km tile from the 0–100 km square), so points just south of it lie in them too.
3. **Zone overlap**: the square overlaps its zone's longitudes — for each band a part of it
   lies in, that grid zone's longitudes (boundaries touching count). The zone exceptions:
   31V 0–3° E, 32V 3–12° E, 31X 0–9° E, 33X 9–21° E, 35X 21–33° E, 37X 33–42° E, and no
   32X, 34X or 36X.
4. **West edge**: its centre lies at most 3 km (measured along the parallel) west of the
   west edge of its grid zone (the one of its band). So partial squares at a zone's *east*
   edge exist however little of them is inside, those at the *west* edge only when about
   half or more is. The antimeridian turns this round: zone 1's squares reaching west past
   180° all exist, zone 60's reaching east past it only with the centre at most 3 km past.
   (The official grid keeps centres 1.39 km outside and drops 4.93 km outside; 3 km lies
   between: no square lies between those distances.)
5. **Official quirks** no simple rule gives: 33WUV, 35WLV and 37WCV exist (W squares west
   of their zone whose northern tip lies in 33X/35X/37X); 32VJH, 32VJJ, 32VJK, 32VKH
   (32V's west end) and 32WME, 34WDE, 36WVE (reaching into a missing 32X/34X/36X) do not.

:func:`tiles_at` returns every existing tile whose 109.8 km square (in its own UTM zone)
contains the point; :func:`tile_origin` and :func:`tile_geobox` refuse IDs the grid does not
have (15PSR at the zone 15 west edge, 32XNM in the missing 32X).
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass

import numpy as np
from affine import Affine
from odc.geo.geobox import GeoBox
from pyproj import Transformer
from shapely.geometry import MultiPolygon, Polygon, box

from s2xr.errors import TileError

BANDS = "CDEFGHJKLMNPQRSTUVWX"
ROWS = "ABCDEFGHJKLMNPQRSTUV"
COLUMN_SETS = {1: "ABCDEFGH", 2: "JKLMNPQR", 0: "STUVWXYZ"}
TILE_SIZE_M = 109_800.0
SQUARE_M = 100_000.0
_ID = re.compile(r"^T?(\d{1,2})([C-HJ-NP-X])([A-HJ-NP-Z])([A-HJ-NP-V])$")


@dataclass(frozen=True)
class TileId:
    """A parsed tile ID."""

    zone: int
    band: str
    square: str

    @property
    def code(self) -> str:
        """Canonical ID, zone zero-padded as in product names: ``01WCR``."""
        return f"{self.zone:02d}{self.band}{self.square}"

    @property
    def grid_code(self) -> str:
        """Earth Search ``grid:code`` (zone not padded): ``MGRS-1WCR``."""
        return f"MGRS-{self.zone}{self.band}{self.square}"

    @property
    def north(self) -> bool:
        return self.band >= "N"

    @property
    def epsg(self) -> int:
        return (32600 if self.north else 32700) + self.zone


def parse_tile_id(tile_id: str) -> TileId:
    """Parse "T39QTA", "39QTA", "1WCR" or "01WCR" (any case) → :class:`TileId`."""
    m = _ID.match(str(tile_id).strip().upper())
    if not m:
        raise TileError(f"tile ID {tile_id!r} is not a Sentinel-2/MGRS tile ID like 39QTA or "
                        "T30STE (zone 1–60, latitude band C–X, 100 km square letters)")
    zone, band, col, row = int(m.group(1)), m.group(2), m.group(3), m.group(4)
    if not 1 <= zone <= 60:
        raise TileError(f"tile ID {tile_id!r}: UTM zone {zone} is not in 1–60")
    if col not in COLUMN_SETS[zone % 3]:
        raise TileError(f"tile ID {tile_id!r}: column letter {col} is not used in zone {zone} "
                        f"(use one of {COLUMN_SETS[zone % 3]})")
    tid = TileId(zone, band, col + row)
    _square_origin(tid)  # raises if the row letter does not occur in this band
    return tid


def tile_epsg(tile_id: str) -> int:
    """EPSG code of the tile's UTM zone (326zz north, 327zz south)."""
    return parse_tile_id(tile_id).epsg


def _zone_lon(zone: int) -> tuple[float, float]:
    west = -180.0 + 6.0 * (zone - 1)
    return west, west + 6.0


def _band_lat(band: str) -> tuple[float, float]:
    """Latitude span of a band; C reaches 84°S and X 84°N, as Sentinel-2 tiles do."""
    i = BANDS.index(band)
    south = -80.0 + 8.0 * i
    return (-84.0 if band == "C" else south), (84.0 if band == "X" else south + 8.0)


@functools.lru_cache(maxsize=4096)
def _band_northing_range(zone: int, band: str) -> tuple[float, float]:
    """Min/max northing the band reaches inside its zone."""
    lat_s, lat_n = _band_lat(band)
    north = band >= "N"
    epsg = (32600 if north else 32700) + zone
    t = Transformer.from_crs(4326, epsg, always_xy=True)
    w, e = _zone_lon(zone)
    lons = np.linspace(w, e, 25)
    _, ns = t.transform(lons, np.full_like(lons, lat_s))
    _, nn = t.transform(lons, np.full_like(lons, lat_n))
    return float(np.min(ns)), float(np.max(nn))


@functools.lru_cache(maxsize=65536)
def _square_origin(tid: TileId) -> tuple[float, float]:
    """(west easting, south northing) of the tile's 100 km square."""
    col, row = tid.square[0], tid.square[1]
    e_west = (COLUMN_SETS[tid.zone % 3].index(col) + 1) * SQUARE_M
    base = ((ROWS.index(row) - (5 if tid.zone % 2 == 0 else 0)) % 20) * SQUARE_M
    lo, hi = _band_northing_range(tid.zone, tid.band)
    for k in range(6):
        s = base + k * 2_000_000.0
        if s + SQUARE_M > lo and s < hi:
            return e_west, s
    raise TileError(f"tile ID {tid.code}: row letter {row} does not occur in latitude band "
                    f"{tid.band} of zone {tid.zone}")


def tile_origin(tile_id: str) -> tuple[float, float]:
    """Upper-left corner (x, y) of the tile in its UTM CRS (an ID the official grid does
    not have raises :class:`TileError`)."""
    tid = parse_tile_id(tile_id)
    if not tile_exists(tid.code):
        raise TileError(f"tile ID {tile_id!r} is not a tile of the official Sentinel-2 grid "
                        f"(the MGRS square {tid.code} exists, but ESA's grid has no tile for "
                        "it: a UTM zone-edge remnant or a zone exception); use "
                        "s2xr.grid.tiles_at(lon, lat) to find the tiles at a place")
    e_west, s = _square_origin(tid)
    n_north = s + SQUARE_M
    rel = n_north if tid.north else n_north - 10_000_000.0
    y = math.ceil(rel / 60.0) * 60.0 + (0.0 if tid.north else 10_000_000.0)
    return math.floor(e_west / 60.0) * 60.0, y


def tile_geobox(tile_id: str, resolution: float = 10) -> GeoBox:
    """The tile's pixel grid at ``resolution`` m (10 → 10980², 20 → 5490², 60 → 1830²)."""
    n = TILE_SIZE_M / resolution
    if abs(n - round(n)) > 1e-9:
        raise TileError(f"resolution {resolution} m does not divide the 109.8 km tile")
    x0, y0 = tile_origin(tile_id)
    return GeoBox((round(n), round(n)), Affine(resolution, 0, x0, 0, -resolution, y0),
                  f"EPSG:{tile_epsg(tile_id)}")


def geobox_epsg(gbox: GeoBox) -> int:
    """The EPSG code of a geobox's CRS (an error if it has none, as a non-UTM WKT CRS may)."""
    epsg = gbox.crs.epsg if gbox.crs is not None else None
    if epsg is None:
        raise TileError(f"geobox CRS {gbox.crs} has no EPSG code")
    return int(epsg)


def tile_footprint(tile_id: str, densify: int = 20) -> Polygon | MultiPolygon:
    """The tile's outline in lon/lat (EPSG:4326), edges densified. Tiles crossing the
    antimeridian come back as a MultiPolygon split at ±180°."""
    x0, y0 = tile_origin(tile_id)
    t = Transformer.from_crs(tile_epsg(tile_id), 4326, always_xy=True)
    s = np.linspace(0, TILE_SIZE_M, densify + 1)
    xs = np.concatenate([x0 + s, np.full(densify, x0 + TILE_SIZE_M), (x0 + s)[::-1][1:],
                         np.full(densify, x0)])
    ys = np.concatenate([np.full(densify + 1, y0), (y0 - s)[1:], np.full(densify, y0 -
                         TILE_SIZE_M), (y0 - TILE_SIZE_M + s)[1:]])
    lon, lat = t.transform(xs, ys)
    lon = np.asarray(lon)
    if lon.max() - lon.min() > 180:  # crosses the antimeridian
        lon = np.where(lon < 0, lon + 360, lon)
        poly = Polygon(zip(lon, lat, strict=True))
        east = poly.intersection(box(-180, -90, 180, 90))
        west = poly.intersection(box(180, -90, 540, 90))
        from shapely.affinity import translate

        parts = [p for p in (east, translate(west, -360)) if not p.is_empty]
        return MultiPolygon([g for p in parts for g in getattr(p, "geoms", [p])])
    return Polygon(zip(lon, lat, strict=True))


def utm_zone_for(lon: float) -> int:
    """The regular 6° UTM zone of a longitude."""
    return int(np.clip(np.floor((lon + 180.0) / 6.0) + 1, 1, 60))


# The grid zones whose longitudes differ from their UTM zone's (None: the zone has no such
# grid zone). Every other grid zone spans its UTM zone's 6°.
_GZD_LON: dict[tuple[int, str], tuple[float, float] | None] = {
    (31, "V"): (0.0, 3.0), (32, "V"): (3.0, 12.0), (31, "X"): (0.0, 9.0), (32, "X"): None,
    (33, "X"): (9.0, 21.0), (34, "X"): None, (35, "X"): (21.0, 33.0), (36, "X"): None,
    (37, "X"): (33.0, 42.0)}
_QUIRK_PRESENT = frozenset({"33WUV", "35WLV", "37WCV"})
_QUIRK_ABSENT = frozenset({"32VJH", "32VJJ", "32VJK", "32VKH", "32WME", "34WDE", "36WVE"})
_WEST_TOLERANCE_M = 3_000.0
_N_ROWS = 100  # 100 km rows from the equator (north) or from 10,000 km south of it
_EDGE_SAMPLES = 26  # points per square edge where a square may span two grid zones


def _gzd_lon(zone: int, band: str) -> tuple[float, float] | None:
    return _GZD_LON.get((zone, band), _zone_lon(zone))


def _band_index(lat: np.ndarray) -> np.ndarray:
    """Index into BANDS of each latitude; C reaches down and X up without limit."""
    return np.clip(np.floor((lat + 80.0) / 8.0), 0, 19).astype(int)


@functools.lru_cache(maxsize=256)
def _transformer(epsg_from: int, epsg_to: int) -> Transformer:
    return Transformer.from_crs(epsg_from, epsg_to, always_xy=True)


def _overlaps_zone(zone: int, north: bool, ew: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Rule 3: does each square (west easting, south northing) overlap its zone's grid
    zones, band by band?"""
    w0 = _zone_lon(zone)[0]
    exceptional = north and 31 <= zone <= 37
    k = np.linspace(0.0, SQUARE_M, _EDGE_SAMPLES if exceptional else 2)
    if exceptional:  # the square's outline, sampled
        dx = np.concatenate([k, np.full_like(k, SQUARE_M), k, np.zeros_like(k)])
        dy = np.concatenate([np.zeros_like(k), k, np.full_like(k, SQUARE_M), k])
    else:  # the corners: every band of a regular zone has the zone's longitudes
        dx, dy = np.array([0.0, 0.0, SQUARE_M, SQUARE_M]), np.array([0.0, SQUARE_M] * 2)
    epsg = (32600 if north else 32700) + zone
    lon, lat = _transformer(epsg, 4326).transform(ew[:, None] + dx, s[:, None] + dy)
    lon = (np.asarray(lon) - w0 + 180.0) % 360.0 - 180.0 + w0  # unwrapped around the zone
    if not exceptional:
        w, e = _zone_lon(zone)
        return (lon.max(1) >= w - 1e-9) & (lon.min(1) <= e + 1e-9)
    bands = _band_index(np.asarray(lat))
    out = np.zeros(len(ew), bool)
    for b in np.unique(bands):
        rng = _gzd_lon(zone, BANDS[b])
        if rng is None:
            continue
        inb = bands == b
        hi = np.where(inb, lon, -np.inf).max(1)
        lo = np.where(inb, lon, np.inf).min(1)
        out |= (hi >= rng[0] - 1e-9) & (lo <= rng[1] + 1e-9)
    return out


@functools.lru_cache(maxsize=128)
def _existing_squares(zone: int, north: bool) -> np.ndarray:
    """Band index (into BANDS) of each existing square of a zone, −1 where none:
    an array [column 0–7, row 0–99] (row = south northing / 100 km)."""
    ci, si = np.meshgrid(np.arange(8), np.arange(_N_ROWS), indexing="ij")
    ew, s = (ci.ravel() + 1) * SQUARE_M, si.ravel() * SQUARE_M
    epsg = (32600 if north else 32700) + zone
    to_ll = _transformer(epsg, 4326)
    clon, clat = (np.asarray(v) for v in to_ll.transform(ew + SQUARE_M / 2, s + SQUARE_M / 2))
    w0 = _zone_lon(zone)[0]
    clon = (clon - w0 + 180.0) % 360.0 - 180.0 + w0
    band = _band_index(clat)
    if north:  # rule 2: the southern edge below 84° N
        _, lat_s = to_ll.transform(np.stack([ew, ew + SQUARE_M]), np.stack([s, s]))
        ok = np.asarray(lat_s).min(0) < 84.0
    else:
        ok = clat >= -84.0
    ok &= (band >= BANDS.index("N")) == north
    ok &= _overlaps_zone(zone, north, ew, s)
    metres_per_deg = 111_320.0 * np.cos(np.radians(clat))
    for b in np.unique(band[ok]):
        rng = _gzd_lon(zone, BANDS[b])
        sel = band == b
        if rng is None:
            ok &= ~sel
        elif zone > 1:  # rule 4: the west edge (zone 1's lies on the antimeridian)
            ok &= ~sel | ((clon - rng[0]) * metres_per_deg >= -_WEST_TOLERANCE_M)
    if zone == 60:
        ok &= (clon - 180.0) * metres_per_deg <= _WEST_TOLERANCE_M
    out = np.where(ok, band, -1).reshape(8, _N_ROWS)
    for code in _QUIRK_PRESENT | _QUIRK_ABSENT:  # rule 5
        if int(code[:2]) == zone and north:
            tid = TileId(zone, code[2], code[3:])
            e_west, s0 = _square_origin(tid)
            c, r = round(e_west / SQUARE_M) - 1, round(s0 / SQUARE_M)
            out[c, r] = BANDS.index(code[2]) if code in _QUIRK_PRESENT else -1
    out.setflags(write=False)
    return out


def tile_exists(tile_id: str) -> bool:
    """Whether the ID names a tile of the official Sentinel-2 grid (a malformed ID raises)."""
    tid = parse_tile_id(tile_id)
    e_west, s = _square_origin(tid)
    c, r = round(e_west / SQUARE_M) - 1, round(s / SQUARE_M)
    if not (0 <= c < 8 and 0 <= r < _N_ROWS):
        return False
    return bool(_existing_squares(tid.zone, tid.north)[c, r] == BANDS.index(tid.band))


def _square_code(zone: int, ci: int, si: int) -> str:
    return COLUMN_SETS[zone % 3][ci] + ROWS[(si % 20 + (5 if zone % 2 == 0 else 0)) % 20]


def all_tile_ids() -> list[str]:
    """Every tile ID of the official grid (56,686), sorted, as the rules above give them."""
    out = []
    for zone in range(1, 61):
        for north in (True, False):
            table = _existing_squares(zone, north)
            for ci, si in zip(*np.nonzero(table >= 0), strict=True):
                out.append(f"{zone:02d}{BANDS[table[ci, si]]}{_square_code(zone, ci, si)}")
    return sorted(out)


def tiles_at_many(lon: np.ndarray, lat: np.ndarray) -> list[list[str]]:
    """For each point, the sorted IDs of every official tile containing it (usually 1–4)."""
    lon = np.asarray(lon, dtype=float).ravel()
    lat = np.asarray(lat, dtype=float).ravel()
    out: list[set[str]] = [set() for _ in range(lon.size)]
    ok = np.isfinite(lon) & np.isfinite(lat) & (lat >= -85.0) & (lat <= 85.0)
    zone0 = np.clip(np.floor((np.where(ok, lon, 0.0) + 180.0) / 6.0) + 1, 1, 60).astype(int)
    # northern tiles reach 9,780 m (0.089°) south of the equator; tiles reach at most two
    # zones east or west of their own (band X near 84° N)
    for north, hemi in ((True, ok & (lat >= -0.1)), (False, ok & (lat < 0.0))):
        off = 0.0 if north else 10_000_000.0
        for dz in (-2, -1, 0, 1, 2):
            zz = (zone0 - 1 + dz) % 60 + 1
            for zone in np.unique(zz[hemi]):
                idx = np.flatnonzero(hemi & (zz == zone))
                epsg = (32600 if north else 32700) + int(zone)
                x, y = (np.asarray(v) for v in _transformer(4326, epsg).transform(
                    lon[idx], lat[idx]))
                table = _existing_squares(int(zone), north)
                for dc in (-1, 0, 1):  # ±1: tiles reach 9.8 km east and south of their
                    for dr in (-1, 0, 1):  # square, and 60 m snapping goes west and north
                        ci = np.floor(x / SQUARE_M).astype(int) - 1 + dc
                        si = np.floor(y / SQUARE_M).astype(int) + dr
                        valid = (ci >= 0) & (ci < 8) & (si >= 0) & (si < _N_ROWS)
                        ci, si = np.where(valid, ci, 0), np.where(valid, si, 0)
                        x0 = np.floor((ci + 1) * SQUARE_M / 60.0) * 60.0
                        y0 = np.ceil(((si + 1) * SQUARE_M - off) / 60.0) * 60.0 + off
                        band = table[ci, si]
                        inside = (valid & (band >= 0) & (x >= x0) & (x < x0 + TILE_SIZE_M) &
                                  (y <= y0) & (y > y0 - TILE_SIZE_M))
                        for k in np.flatnonzero(inside):
                            out[idx[k]].add(f"{int(zone):02d}{BANDS[band[k]]}"
                                            f"{_square_code(int(zone), ci[k], si[k])}")
    return [sorted(o) for o in out]


def tiles_at(lon: float, lat: float) -> list[str]:
    """IDs ("30STE") of every official Sentinel-2 tile containing the point."""
    return tiles_at_many(np.array([lon]), np.array([lat]))[0]
