"""Render Sentinel-2-like L2A rasters of the embedded world.

Every field (coastline, land cover, clouds, shadows, ships) is an analytic function of UTM
coordinates, so the 10 m bands, the 20 m bands and the 20 m SCL agree wherever they overlap,
and a full 10980² tile can be rendered in row strips with bounded memory.

Reflectances follow L2A conventions: ``DN = round((reflectance + 0.1) / 0.0001)`` (processing
baseline ≥ 04.00 carries the +1000 offset), DN 0 is nodata, SCL classes as in ESA's L2A.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil
from affine import Affine
from rasterio.enums import Resampling

BANDS_10M = ("blue", "green", "red", "nir")
BANDS_20M = ("swir16", "swir22")
ALL_BANDS = BANDS_10M + BANDS_20M
BAND_FILES = {"blue": "B02", "green": "B03", "red": "B04", "nir": "B08",
              "swir16": "B11", "swir22": "B12", "scl": "SCL"}

# Surface reflectance by class, in ALL_BANDS order.
WATER = np.array([0.045, 0.040, 0.024, 0.012, 0.006, 0.004])
VEGETATION = np.array([0.035, 0.070, 0.045, 0.320, 0.200, 0.100])
SOIL = np.array([0.100, 0.140, 0.180, 0.250, 0.320, 0.250])
CLOUD = np.array([0.480, 0.470, 0.470, 0.500, 0.350, 0.250])
HULL = np.array([0.090, 0.100, 0.110, 0.160, 0.130, 0.100])
BRIDGE = np.array([0.220, 0.230, 0.240, 0.420, 0.320, 0.240])
WAKE = np.array([0.020, 0.020, 0.015, 0.010, 0.004, 0.002])

SCL_SHADOW, SCL_VEG, SCL_SOIL, SCL_WATER = 3, 4, 5, 6
SCL_CLOUD_MED, SCL_CLOUD_HIGH, SCL_CIRRUS = 8, 9, 10


@dataclass(frozen=True)
class Coast:
    """Two noisy coastlines (north and south shore of a strait) as functions of easting."""

    north_y: float  # mean northing of the north shore
    south_y: float
    amps: tuple[float, ...]
    wavelengths: tuple[float, ...]
    phases_n: tuple[float, ...]
    phases_s: tuple[float, ...]

    def shores(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Northings of the north and south shore at eastings ``x``."""
        n = np.full_like(x, self.north_y, dtype=float)
        s = np.full_like(x, self.south_y, dtype=float)
        for a, w, pn, ps in zip(self.amps, self.wavelengths, self.phases_n, self.phases_s,
                                strict=True):
            n += a * np.sin(2 * np.pi * x / w + pn)
            s += a * np.sin(2 * np.pi * x / w + ps)
        return n, s

    def land(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        """Land mask on the grid of 1-D axes ``xs`` × ``ys`` (north of the north shore or
        south of the south shore)."""
        n, s = self.shores(xs)
        return (ys[:, None] > n[None, :]) | (ys[:, None] < s[None, :])


@dataclass(frozen=True)
class CloudField:
    """Gaussian cloud blobs; thin cirrus where the field is weak, thick cloud where strong."""

    cx: np.ndarray
    cy: np.ndarray
    radius: np.ndarray
    weight: np.ndarray
    shadow_dx: float = 400.0
    shadow_dy: float = 250.0

    def density(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        """Cloud density on the grid of 1-D axes ``xs`` (columns) × ``ys`` (rows)."""
        out = np.zeros((ys.size, xs.size))
        for cx, cy, r, w in zip(self.cx, self.cy, self.radius, self.weight, strict=True):
            gx = np.exp(-((xs - cx) ** 2) / (2 * r * r))
            gy = np.exp(-((ys - cy) ** 2) / (2 * r * r))
            if gx.max() < 1e-6 or gy.max() < 1e-6:
                continue
            out += w * np.outer(gy, gx)
        return out


@dataclass(frozen=True)
class ShipDraw:
    """One ship as drawn at sensing time: antenna position and hull geometry (metres)."""

    x: float  # antenna easting
    y: float  # antenna northing
    heading: float  # degrees clockwise from north
    to_bow: float  # AIS dimension A
    to_stern: float  # B
    to_port: float  # C
    to_starboard: float  # D
    speed_ms: float

    def bbox(self, pad: float = 0.0) -> tuple[float, float, float, float]:
        r = max(self.to_bow, self.to_stern) + max(self.to_port, self.to_starboard) + pad
        wake = 6 * (self.to_bow + self.to_stern) if self.speed_ms > 0.5 else 0.0
        r += wake
        return self.x - r, self.y - r, self.x + r, self.y + r


def _hull_components(ship: ShipDraw, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, ...]:
    """Along-ship (u, towards bow) and cross-ship (v, towards starboard) coordinates."""
    h = np.deg2rad(ship.heading)
    dx, dy = x - ship.x, y - ship.y
    u = dx * np.sin(h) + dy * np.cos(h)
    v = dx * np.cos(h) - dy * np.sin(h)
    return u, v


def hull_mask(ship: ShipDraw, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Boolean: point inside the hull rectangle (A/B/C/D around the antenna)."""
    u, v = _hull_components(ship, x, y)
    return (u <= ship.to_bow) & (u >= -ship.to_stern) & (v <= ship.to_starboard) & (
        v >= -ship.to_port)


def _ship_layers(ship: ShipDraw, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, ...]:
    """Fractions (hull, bridge, wake) at sub-pixel sample points.

    The superstructure (where the GPS antenna sits) is a bright block at least 10 m wide,
    centred on the antenna and brightest at its centre, so the hull's brightest pixel marks
    the AIS position even for small ships.
    """
    u, v = _hull_components(ship, x, y)
    inside = hull_mask(ship, x, y)
    length = ship.to_bow + ship.to_stern
    half = max(5.0, 0.04 * length, 0.5 * (ship.to_port + ship.to_starboard))
    block = (np.abs(u) <= half) & (np.abs(v) <= half)
    bridge = block * (1.0 - 0.5 * np.maximum(np.abs(u), np.abs(v)) / half)
    wake = np.zeros_like(u)
    if ship.speed_ms > 0.5:
        behind = -u - ship.to_stern
        spread = (ship.to_port + ship.to_starboard) * (1 + behind / length)
        wake = ((behind > 0) & (behind < 6 * length) & (np.abs(v) < spread)) * np.exp(
            -behind / (2 * length))
    return (inside | block).astype(float), bridge, wake


def render_ships(ships: list[ShipDraw], x0: float, y0: float, res: float, shape: tuple[int, int],
                 refl: np.ndarray, bands: tuple[int, ...], supersample: int = 4) -> None:
    """Blend ships into ``refl`` (band, row, col) in place; grid origin (x0, y0) top-left."""
    h, w = shape
    offs = (np.arange(supersample) + 0.5) / supersample
    for ship in ships:
        bx0, by0, bx1, by1 = ship.bbox(pad=2 * res)
        c0 = max(int(np.floor((bx0 - x0) / res)), 0)
        c1 = min(int(np.ceil((bx1 - x0) / res)), w)
        r0 = max(int(np.floor((y0 - by1) / res)), 0)
        r1 = min(int(np.ceil((y0 - by0) / res)), h)
        if c0 >= c1 or r0 >= r1:
            continue
        cols = x0 + (np.arange(c0, c1)[:, None] + offs[None, :]).ravel() * res
        rows = y0 - (np.arange(r0, r1)[:, None] + offs[None, :]).ravel() * res
        xx, yy = np.meshgrid(cols, rows)
        hull, bridge, wake = _ship_layers(ship, xx, yy)
        shp = (r1 - r0, supersample, c1 - c0, supersample)
        hull = hull.reshape(shp).mean(axis=(1, 3))
        bridge = bridge.reshape(shp).mean(axis=(1, 3))
        wake = wake.reshape(shp).mean(axis=(1, 3))
        for k, b in enumerate(bands):
            win = refl[k, r0:r1, c0:c1]
            target = HULL[b] + (BRIDGE[b] - HULL[b]) * np.where(hull > 0, bridge / np.maximum(
                hull, 1e-9), 0)
            win[:] = win * (1 - hull) + target * hull + WAKE[b] * wake * (1 - hull)


@dataclass(frozen=True)
class SceneModel:
    """Everything needed to render one scene on any grid."""

    coast: Coast
    clouds: CloudField
    ships: tuple[ShipDraw, ...]
    noise_seed: int
    nodata_corner: bool = False  # a swath edge cutting off the top-left corner

    def _valid(self, xs: np.ndarray, ys: np.ndarray, x0: float, y0: float) -> np.ndarray:
        if not self.nodata_corner:
            return np.ones((ys.size, xs.size), bool)
        return (xs[None, :] - x0) + (y0 - ys[:, None]) > 6000.0

    def classes(self, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, ...]:
        """land (bool), vegetation fraction, cloud density, shadow density on the grid."""
        land = self.coast.land(xs, ys)
        veg = 0.5 + 0.5 * np.outer(np.cos(ys / 1300.0), np.sin(xs / 1700.0))
        cloud = self.clouds.density(xs, ys)
        shadow = self.clouds.density(xs + self.clouds.shadow_dx, ys + self.clouds.shadow_dy)
        return land, veg, cloud, shadow

    @staticmethod
    def _axes(x0: float, y0: float, res: float, rows: tuple[int, int],
              width: int) -> tuple[np.ndarray, np.ndarray]:
        xs = x0 + (np.arange(width) + 0.5) * res
        ys = y0 - (np.arange(rows[0], rows[1]) + 0.5) * res
        return xs, ys

    def render(self, x0: float, y0: float, res: float, rows: tuple[int, int], width: int,
               band_idx: tuple[int, ...], origin: tuple[float, float]) -> np.ndarray:
        """Reflectance (band, row, col) float64 for rows ``rows`` of a grid at (x0, y0)."""
        r0, r1 = rows
        xs, ys = self._axes(x0, y0, res, rows, width)
        land, veg, cloud, shadow = self.classes(xs, ys)
        rng = np.random.default_rng([self.noise_seed, r0, int(res)])
        out = np.empty((len(band_idx), r1 - r0, width))
        opacity = np.clip(cloud, 0, 1)
        shade = 1 - 0.5 * np.clip(shadow - 0.5, 0, 1) * (cloud < 0.3)
        for k, b in enumerate(band_idx):
            surf = np.where(land, VEGETATION[b] * veg + SOIL[b] * (1 - veg), WATER[b])
            out[k] = surf * shade
        render_ships(list(self.ships), x0, y0 - r0 * res, res, (r1 - r0, width), out, band_idx)
        for k, b in enumerate(band_idx):
            out[k] = out[k] * (1 - opacity) + CLOUD[b] * opacity
            out[k] += rng.normal(0, 0.002 * (1 + (b >= 3)), size=out[k].shape)
        out[:, ~self._valid(xs, ys, *origin)] = np.nan
        return out

    def scl(self, x0: float, y0: float, res: float, rows: tuple[int, int], width: int,
            origin: tuple[float, float]) -> np.ndarray:
        """SCL classes (row, col) uint8 for rows ``rows``."""
        xs, ys = self._axes(x0, y0, res, rows, width)
        land, veg, cloud, shadow = self.classes(xs, ys)
        out = np.where(land, np.where(veg > 0.5, SCL_VEG, SCL_SOIL), SCL_WATER).astype(np.uint8)
        out[(shadow > 0.5) & (cloud < 0.3)] = SCL_SHADOW
        out[(cloud > 0.08) & (cloud <= 0.3)] = SCL_CIRRUS
        out[(cloud > 0.3) & (cloud <= 0.6)] = SCL_CLOUD_MED
        out[cloud > 0.6] = SCL_CLOUD_HIGH
        out[~self._valid(xs, ys, *origin)] = 0
        return out


def to_dn(refl: np.ndarray) -> np.ndarray:
    """Reflectance → uint16 DN with the +1000 offset; NaN → 0 (nodata); never 0 otherwise."""
    dn = np.round((refl + 0.1) / 0.0001)
    dn = np.where(np.isnan(dn), 0, np.clip(dn, 1, 65535))
    return dn.astype(np.uint16)


def _to_cog(tmp_tif: Path, path: Path, dtype: str) -> None:
    tmp_cog = path.with_suffix(".tmp-cog.tif")
    resampling = "NEAREST" if dtype == "uint8" else "AVERAGE"
    rasterio.shutil.copy(tmp_tif, tmp_cog, driver="COG", compress="DEFLATE", blocksize=512,
                         overview_resampling=resampling, BIGTIFF="IF_SAFER")
    tmp_tif.unlink()
    tmp_cog.replace(path)


def write_cogs(paths: list[Path], descriptions: list[str], height: int, width: int,
               transform: Affine, epsg: int, dtype: str, fill, strip_rows: int = 1024) -> None:
    """Write single-band COGs (one per path), filling all of them strip by strip with
    ``fill(r0, r1) -> array(band, rows, cols)``.

    Tiled GTiffs are written first (bounded memory), then copied to COGs with overviews;
    both steps use temporary names and each COG is renamed into place at the end.
    """
    profile = dict(driver="GTiff", height=height, width=width, count=1, dtype=dtype,
                   crs=f"EPSG:{epsg}", transform=transform, nodata=0, tiled=True,
                   blockxsize=512, blockysize=512, compress="deflate")
    tmps = [p.with_suffix(".tmp-src.tif") for p in paths]
    for p in paths:
        p.parent.mkdir(parents=True, exist_ok=True)
    dsts = [rasterio.open(t, "w", **profile) for t in tmps]
    try:
        for d, desc in zip(dsts, descriptions, strict=True):
            d.set_band_description(1, desc)
        for r0 in range(0, height, strip_rows):
            r1 = min(r0 + strip_rows, height)
            block = fill(r0, r1)
            for k, d in enumerate(dsts):
                d.write(block[k], 1, window=((r0, r1), (0, width)))
    finally:
        for d in dsts:
            d.close()
    for t, p in zip(tmps, paths, strict=True):
        _to_cog(t, p, dtype)


def render_scene(model: SceneModel, out_dir: Path, x0: float, y0: float, size_10m: int,
                 epsg: int) -> dict[str, Path]:
    """Write B02/B03/B04/B08 (10 m), B11/B12 and SCL (20 m) COGs; return band → path."""
    paths: dict[str, Path] = {}
    origin = (x0, y0)
    size_20m = size_10m // 2
    for group, res, size in ((BANDS_10M, 10.0, size_10m), (BANDS_20M, 20.0, size_20m)):
        idx = tuple(ALL_BANDS.index(b) for b in group)
        files = [out_dir / f"{BAND_FILES[b]}.tif" for b in group]

        def fill(r0: int, r1: int, idx: tuple[int, ...] = idx, res: float = res,
                 size: int = size) -> np.ndarray:
            return to_dn(model.render(x0, y0, res, (r0, r1), size, idx, origin))

        write_cogs(files, list(group), size, size, Affine(res, 0, x0, 0, -res, y0), epsg,
                   "uint16", fill)
        paths.update(zip(group, files, strict=True))

    def fill_scl(r0: int, r1: int) -> np.ndarray:
        return model.scl(x0, y0, 20.0, (r0, r1), size_20m, origin)[None]

    path = out_dir / "SCL.tif"
    write_cogs([path], ["scl"], size_20m, size_20m, Affine(20, 0, x0, 0, -20, y0), epsg,
               "uint8", fill_scl)
    paths["scl"] = path
    return paths


def read_overview_rgb(paths: dict[str, Path], max_size: int = 512) -> np.ndarray:
    """A small RGB preview (uint8, row, col, 3) from the red/green/blue COGs' overviews."""
    chans = []
    for name in ("red", "green", "blue"):
        with rasterio.open(paths[name]) as src:
            scale = max(src.width, src.height) / max_size
            shape = (max(1, int(src.height / scale)), max(1, int(src.width / scale)))
            arr = src.read(1, out_shape=shape, resampling=Resampling.average).astype(float)
        chans.append(np.clip((arr * 1e-4 - 0.1) / 0.3, 0, 1))
    return (np.stack(chans, -1) * 255).astype(np.uint8)
