"""The Earth as overpass planning models it: the WGS84 ellipsoid (geodetic ↔ Earth-fixed
coordinates, the local vertical), the sun's elevation (USNO low-precision formula, ~0.01°,
no ephemeris file) and the points a tile footprint is sampled at."""

from __future__ import annotations

import numpy as np
import pandas as pd
from pyproj import Transformer

from s2xr.grid import TILE_SIZE_M, tile_epsg, tile_origin

WGS84_A_KM = 6378.137
WGS84_F = 1 / 298.257223563
WGS84_E2 = WGS84_F * (2 - WGS84_F)


def geodetic_to_ecef(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """WGS84 (lon, lat) degrees on the ellipsoid → ECEF km, shape (3, N)."""
    lo, la = np.radians(np.asarray(lon, float)), np.radians(np.asarray(lat, float))
    n = WGS84_A_KM / np.sqrt(1 - WGS84_E2 * np.sin(la) ** 2)
    return np.array([n * np.cos(la) * np.cos(lo), n * np.cos(la) * np.sin(lo),
                     n * (1 - WGS84_E2) * np.sin(la)])


def ecef_to_geodetic(xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ECEF km (3, N) → geodetic (lon, lat) degrees (iterated, sub-millimetre)."""
    x, y, z = xyz
    p = np.hypot(x, y)
    lat = np.arctan2(z, p * (1 - WGS84_E2))
    for _ in range(4):
        n = WGS84_A_KM / np.sqrt(1 - WGS84_E2 * np.sin(lat) ** 2)
        h = p / np.cos(lat) - n
        lat = np.arctan2(z, p * (1 - WGS84_E2 * n / (n + h)))
    return np.degrees(np.arctan2(y, x)), np.degrees(lat)


def local_up(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Unit vector of the geodetic vertical at (lon, lat) degrees (ECEF, shape (3, N))."""
    lo, la = np.radians(lon), np.radians(lat)
    return np.array([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)])


def sun_elevation_deg(times: pd.DatetimeIndex, lon: np.ndarray | float,
                      lat: np.ndarray | float) -> np.ndarray:
    """Solar elevation (degrees, no refraction) from the USNO low-precision formula."""
    d = (pd.DatetimeIndex(times).tz_convert("UTC").asi8 / 86400e9 + 2440587.5) - 2451545.0
    g = np.radians(357.529 + 0.98560028 * d)
    q = 280.459 + 0.98564736 * d
    ecl = np.radians(q + 1.915 * np.sin(g) + 0.020 * np.sin(2 * g))
    eps = np.radians(23.439 - 0.00000036 * d)
    ra = np.degrees(np.arctan2(np.cos(eps) * np.sin(ecl), np.cos(ecl)))
    dec = np.arcsin(np.sin(eps) * np.sin(ecl))
    gmst = (18.697374558 + 24.06570982441908 * d) % 24
    ha = np.radians(gmst * 15 + np.asarray(lon) - ra)
    la = np.radians(np.asarray(lat))
    return np.degrees(np.arcsin(np.sin(la) * np.sin(dec) + np.cos(la) * np.cos(dec) *
                                np.cos(ha)))


def tile_sample_points(tile_id: str, n: int = 9) -> tuple[np.ndarray, np.ndarray]:
    """(lon, lat) of the tile centre followed by an n×n grid over the footprint."""
    x0, y0 = tile_origin(tile_id)
    s = np.linspace(0.0, TILE_SIZE_M, n)
    xx, yy = np.meshgrid(x0 + s, y0 - s)
    xs = np.concatenate([[x0 + TILE_SIZE_M / 2], xx.ravel()])
    ys = np.concatenate([[y0 - TILE_SIZE_M / 2], yy.ravel()])
    lon, lat = Transformer.from_crs(tile_epsg(tile_id), 4326, always_xy=True).transform(xs, ys)
    return np.asarray(lon), np.asarray(lat)

