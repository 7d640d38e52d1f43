"""The data of the Earth Search twin: real Earth Search v1 items, rasters on their real grids.

An item is served as Earth Search returned it (``sentinel-2-l2a`` with ``proj:epsg`` and
``earthsearch:boa_offset_applied``; ``sentinel-2-c1-l2a`` with its ``cloud``/``snow``/
``preview`` assets, ``file:*`` fields and no offset flag); only the hosts change: links name
the twin's API, and the COG hrefs on Earth Search's buckets name the same path on the twin
(``https://sentinel-cogs.s3.us-west-2.amazonaws.com/P`` →
``http://127.0.0.1:PORT/sentinel-cogs.s3.us-west-2.amazonaws.com/P``).

Behind each chip asset (``blue green red nir`` at 10 m, ``swir16 swir22 scl`` at 20 m) lies a
**synthetic** tiled GeoTIFF with the asset's real ``proj:shape`` and ``proj:transform`` in the
item's CRS: sparse (only a window around :func:`scene_centre` has data, the rest is nodata and
takes no bytes), its DN given by :func:`twin_dn` so that a test can compute every pixel a chip
must hold (DN × scale + offset of the item's reflectance rule). SCL is water (6) everywhere in
the window. :func:`twin_ais` puts ships on those windows at each item's sensing time.

Two derived shapes (never real items, named so): :func:`to_proj_code` (projection extension
v2: ``proj:code`` instead of ``proj:epsg``, as STAC 1.1 / pystac ≥ 1.15 write it) and
:func:`before_baseline_4` (an item processed before baseline 04.00: no BOA offset).
"""

from __future__ import annotations

import copy
import json
import selectors
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pandas as pd
import rasterio
from affine import Affine
from pyproj import Transformer
from rasterio.windows import Window

from s2xr.demo.stac_server import free_port
from s2xr.errors import ServerError
from s2xr.procs import forget_child, spawn_child, stop_child

EARTH_SEARCH_URL = "https://earth-search.aws.element84.com/v1"
#: buckets whose COG hrefs the twin serves (sentinel-2-l2a, sentinel-2-c1-l2a)
DATA_HOSTS = ("sentinel-cogs.s3.us-west-2.amazonaws.com",
              "e84-earth-search-sentinel-data.s3.us-west-2.amazonaws.com")
CHIP_ASSETS = ("blue", "green", "red", "nir", "swir16", "swir22", "scl")
WINDOW_M = 7680.0  # side of the data window (m): 768 px at 10 m, 384 at 20 m
EDGE_M = 12_000.0  # the window centre keeps this far from the tile edges (tile overlaps)
SCL_WATER = 6

# DN = base + (a·row + b·col) mod span on the asset's own pixel grid; green high and nir low
# so the NDWI gate sees water under both reflectance rules
_PATTERN = {"blue": (1500, 7, 11, 600), "green": (2000, 3, 5, 400), "red": (1200, 13, 3, 500),
            "nir": (1100, 1, 2, 100), "swir16": (1050, 1, 1, 50), "swir22": (1020, 2, 1, 40)}


def twin_dn(asset: str, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """The DN of ``asset`` at absolute pixel ``rows`` × ``cols`` of its own grid (broadcast),
    inside the data window (outside it the raster is nodata 0)."""
    if asset == "scl":
        return np.full(np.broadcast(rows, cols).shape, SCL_WATER, np.uint8)
    base, a, b, span = _PATTERN[asset]
    return (base + (a * np.asarray(rows) + b * np.asarray(cols)) % span).astype(np.uint16)


def item_epsg(item: dict[str, Any]) -> int:
    """EPSG of an item from ``proj:epsg`` or ``proj:code``."""
    p = item["properties"]
    if p.get("proj:epsg"):
        return int(p["proj:epsg"])
    return int(str(p["proj:code"]).split(":")[1])


def scene_centre(item: dict[str, Any]) -> tuple[float, float]:
    """(x, y) in the item's CRS, on its 10 m grid: the data centroid (``proj:centroid``, else
    the geometry's), kept ``EDGE_M`` inside the tile so the window is the tile's own."""
    import shapely.geometry

    p = item["properties"]
    if "proj:centroid" in p:
        lon, lat = float(p["proj:centroid"]["lon"]), float(p["proj:centroid"]["lat"])
    else:
        c = shapely.geometry.shape(item["geometry"]).centroid
        lon, lat = c.x, c.y
    x, y = Transformer.from_crs(4326, item_epsg(item), always_xy=True).transform(lon, lat)
    t = item["assets"]["blue"]["proj:transform"]
    h, w = item["assets"]["blue"]["proj:shape"]
    x0, y0, res = float(t[2]), float(t[5]), float(t[0])
    x = min(max(x, x0 + EDGE_M), x0 + w * res - EDGE_M)
    y = min(max(y, y0 - h * res + EDGE_M), y0 - EDGE_M)
    return x0 + round((x - x0) / 20) * 20, y0 + round((y - y0) / 20) * 20


def _twin_href(href: str, base_url: str) -> str | None:
    parts = urlsplit(href)
    if parts.scheme == "https" and parts.netloc in DATA_HOSTS:
        return f"{base_url}/{parts.netloc}{parts.path}"
    return None


def _rewrite_links(item: dict[str, Any], api_url: str) -> None:
    for link in item.get("links", []):
        if str(link.get("href", "")).startswith(EARTH_SEARCH_URL):
            link["href"] = api_url + link["href"][len(EARTH_SEARCH_URL):]


def write_asset(path: Path, asset: str, meta: dict[str, Any], epsg: int,
                centre: tuple[float, float]) -> None:
    """A sparse tiled GeoTIFF on the asset's grid with :func:`twin_dn` in the data window."""
    t = meta["proj:transform"]
    h, w = (int(v) for v in meta["proj:shape"])
    res = float(t[0])
    n = int(WINDOW_M / res)
    col0 = round((centre[0] - t[2]) / res) - n // 2
    row0 = round((t[5] - centre[1]) / res) - n // 2
    rows, cols = np.mgrid[row0:row0 + n, col0:col0 + n]
    dtype = "uint8" if asset == "scl" else "uint16"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.tif")
    with rasterio.open(tmp, "w", driver="GTiff", width=w, height=h, count=1, dtype=dtype,
                       crs=f"EPSG:{epsg}", transform=Affine(*t[:6]), nodata=0, tiled=True,
                       blockxsize=512, blockysize=512, compress="deflate",
                       sparse_ok=True) as ds:
        ds.write(twin_dn(asset, rows, cols)[None], window=Window(col0, row0, n, n))
    tmp.replace(path)


def twin_item(item: dict[str, Any], root: Path, *, api_url: str, base_url: str,
              write: bool = True) -> dict[str, Any]:
    """``item`` as the twin serves it (links on ``api_url``, COG hrefs on ``base_url``), and
    with ``write`` its chip assets' rasters written under ``root/{host}/{path}``."""
    out = copy.deepcopy(item)
    _rewrite_links(out, api_url)
    centre = scene_centre(item)
    epsg = item_epsg(item)
    for key, asset in out["assets"].items():
        href = _twin_href(str(asset.get("href", "")), base_url)
        if href is None:
            continue
        asset["href"] = href
        if write and key in CHIP_ASSETS:
            parts = urlsplit(item["assets"][key]["href"])
            path = root / parts.netloc / parts.path.lstrip("/")
            if not path.exists():
                write_asset(path, key, asset, epsg, centre)
    return out


def to_proj_code(item: dict[str, Any]) -> dict[str, Any]:
    """Derived: the item with the projection extension v2 (``proj:code`` "EPSG:n" on the item
    and each asset that had ``proj:epsg``; ``proj:epsg`` removed)."""
    out = copy.deepcopy(item)
    for holder in [out["properties"], *out["assets"].values()]:
        if "proj:epsg" in holder:
            holder["proj:code"] = f"EPSG:{int(holder.pop('proj:epsg'))}"
    out["stac_extensions"] = [
        "https://stac-extensions.github.io/projection/v2.0.0/schema.json"
        if "/projection/" in e else e for e in out.get("stac_extensions", [])]
    return out


def before_baseline_4(item: dict[str, Any], day: str = "2021-12-24") -> dict[str, Any]:
    """Derived: the item as if sensed on ``day`` and processed before baseline 04.00 (no BOA
    offset: reflectance = DN × 0.0001). Its ``raster:bands`` still say offset −0.1, as Earth
    Search's do for such items; the id, dates and hrefs name the new day."""
    out = copy.deepcopy(item)
    old_day = out["properties"]["datetime"][:10]
    baseline = "N" + str(out["properties"]["s2:processing_baseline"]).replace(".", "")
    text = json.dumps(out)
    for old, new in ((old_day.replace("-", ""), day.replace("-", "")), (old_day, day),
                     (baseline, "N0301"),
                     (f"/{int(old_day[:4])}/{int(old_day[5:7])}/",
                      f"/{int(day[:4])}/{int(day[5:7])}/")):
        text = text.replace(old, new)
    out = json.loads(text)
    p = out["properties"]
    p["s2:processing_baseline"] = "03.01"
    p["earthsearch:boa_offset_applied"] = False
    return out


@dataclass(frozen=True)
class TwinShip:
    """A ship of :func:`twin_ais`: where it is at the item's sensing time."""

    mmsi: int
    item_id: str
    x: float
    y: float
    epsg: int
    time: pd.Timestamp


def twin_ships(items: list[dict[str, Any]], per_item: int = 3,
               first_mmsi: int = 477_100_001) -> list[TwinShip]:
    """``per_item`` ships inside each item's data window at its sensing time, on the 10 m
    grid (offsets within ±1 km of the window centre)."""
    offsets = [(0, 0), (600, -400), (-700, 500), (300, 800), (-500, -900)]
    ships = []
    for i, it in enumerate(items):
        cx, cy = scene_centre(it)
        t = pd.Timestamp(it["properties"]["datetime"]).tz_convert("UTC")
        for k in range(per_item):
            dx, dy = offsets[k % len(offsets)]
            ships.append(TwinShip(first_mmsi + 100 * i + k, it["id"], cx + dx, cy + dy,
                                  item_epsg(it), t))
    return ships


def twin_ais(ships: list[TwinShip], *, step_s: float = 30.0, n_fixes: int = 9,
             speed_kn: float = 6.0) -> pd.DataFrame:
    """AIS fixes of ``ships`` (columns mmsi, time, lat, lon, sog, cog, heading, ship_type,
    length, beam, ship_name): each ship steams east at ``speed_kn``, a fix every ``step_s``,
    the middle fix at the sensing time on the ship's spot."""
    rows = []
    v = speed_kn * 0.514444
    for s in ships:
        to_ll = Transformer.from_crs(s.epsg, 4326, always_xy=True)
        for k in range(n_fixes):
            dt = (k - n_fixes // 2) * step_s
            lon, lat = to_ll.transform(s.x + v * dt, s.y)
            rows.append({"mmsi": s.mmsi, "time": s.time + pd.Timedelta(seconds=dt),
                         "lat": lat, "lon": lon, "sog": speed_kn, "cog": 90.0, "heading": 90,
                         "ship_type": 70, "length": 120.0, "beam": 20.0,
                         "ship_name": f"TWIN {s.mmsi % 1000:03d}"})
    return pd.DataFrame(rows)


class EarthSearchTwin:
    """``with EarthSearchTwin(items, root) as es:`` — the twin's API at ``es.url`` (``…/v1``)
    and its rasters, served by a child process on 127.0.0.1 that dies with this one.

    ``items``: real Earth Search item dicts; ``es.items`` are the same as the twin serves
    them. :meth:`searches` lists the parameters of every search it answered."""

    def __init__(self, items: list[dict[str, Any]], root: Path, *, host: str = "127.0.0.1",
                 port: int | None = None, startup_timeout_s: float = 60.0) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.root = Path(root)
        self.startup_timeout_s = startup_timeout_s
        self.source = list(items)
        self.items = [twin_item(it, self.root, api_url=self.url, base_url=self.base_url,
                                write=False) for it in self.source]
        self.pid_file = self.root / f".estwin-{self.port}.pid"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.base_url}/v1"

    def start(self) -> EarthSearchTwin:
        self.root.mkdir(parents=True, exist_ok=True)
        src = self.root / f"items-{self.port}.json"
        src.write_text(json.dumps(self.source))
        cmd = [sys.executable, "-m", "s2xr.demo.earth_search_api", str(src), "--root",
               str(self.root), "--host", self.host, "--port", str(self.port)]
        self._proc = spawn_child(cmd, pid_file=self.pid_file, stdout=subprocess.PIPE)
        assert self._proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(self._proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + self.startup_timeout_s
        line = b""
        while not line.endswith(b"\n") and time.monotonic() < deadline:
            if not sel.select(timeout=deadline - time.monotonic()):
                break
            chunk = self._proc.stdout.readline()
            if not chunk:  # the child exited
                break
            line += chunk
        sel.close()
        if not line.startswith(b"ready "):
            code = self._proc.poll()
            self.stop()
            raise ServerError(f"the Earth Search twin did not start (exit {code}): {line!r}")
        return self

    def searches(self) -> list[dict[str, Any]]:
        import requests

        return list(requests.get(f"{self.base_url}/__twin__/searches", timeout=10)
                    .json()["searches"])

    def stop(self) -> None:
        if self._proc is not None:
            stop_child(self._proc)
            if self._proc.stdout is not None:
                self._proc.stdout.close()
            self._proc = None
        forget_child(self.pid_file)

    def __enter__(self) -> EarthSearchTwin:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
