"""Build the embedded world: scenes (COGs), STAC items, AIS tracks and the ground truth.

``build_world(root, DemoConfig)`` is deterministic for a given config (seeded) and idempotent:
an existing world with the same config fingerprint is reused. Layout under ``root``::

    world.json                  manifest (config, tile, EPSG, window, items)
    scenes/{item_id}/B02.tif …  COGs: B02 B03 B04 B08 (10 m), B11 B12 SCL (20 m)
    stac/collection.json        STAC Collection
    stac/items.json             ItemCollection (Earth Search v1 shape, file:// hrefs)
    ais/demo_ais.csv            synthetic AIS fixes (provider=synthetic) + static columns
    truth/ships.parquet         where every hull is at each sensing time (for tests)
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from affine import Affine
from odc.geo.geobox import GeoBox
from pyproj import Transformer

from s2xr.config import DemoConfig
from s2xr.demo.fleet import make_fixes, make_fleet, place_ships, ship_draws
from s2xr.demo.items import make_collection, make_item
from s2xr.demo.render import CloudField, Coast, SceneModel, render_scene
from s2xr.grid import geobox_epsg, tile_geobox
from s2xr.store.layout import DatasetLayout, atomic_write_text

log = logging.getLogger(__name__)

COLLECTION = "sentinel-2-l2a"
WORLD_VERSION = 3  # 3: AIS headings are true bearings; 2: real S2 pass times


@dataclass(frozen=True)
class World:
    """Paths and facts of a built embedded world."""

    root: Path
    tile: str
    epsg: int
    window: GeoBox  # 10 m grid of the rendered window (aligned to the real tile grid)
    item_ids: tuple[str, ...]
    collection: str = COLLECTION

    @property
    def items_path(self) -> Path:
        return self.root / "stac" / "items.json"

    @property
    def collection_path(self) -> Path:
        return self.root / "stac" / "collection.json"

    @property
    def ais_path(self) -> Path:
        return self.root / "ais" / "demo_ais.csv"

    @property
    def truth_path(self) -> Path:
        return self.root / "truth" / "ships.parquet"

    def items(self) -> list[dict[str, Any]]:
        """The item dicts (raw JSON, ``proj:epsg`` intact)."""
        return json.loads(self.items_path.read_text())["features"]

    def truth(self) -> pd.DataFrame:
        return pd.read_parquet(self.truth_path)


def _fingerprint(cfg: DemoConfig) -> str:
    blob = json.dumps({"v": WORLD_VERSION, **cfg.model_dump(mode="json")}, sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()[:12]


def real_passes(tile: str, first: pd.Timestamp, n: int) -> list[tuple[str, pd.Timestamp]]:
    """The first ``n`` real Sentinel-2 passes (bundled TLEs) from ``first`` whose swath covers
    at least 90 % of ``tile`` → [(satellite 'S2A'/'S2B'/'S2C', sensing time)], so that the
    embedded world is imaged when the real satellites would image it."""
    from s2xr.planning import predict_tle_passes, read_tle, select_tles

    tles = select_tles(read_tle(None), first + pd.Timedelta(days=15))
    end = first + pd.Timedelta(days=max(30, 6 * n))
    df = predict_tle_passes([tile], first, end, tles)
    df = df.loc[df["coverage"] >= 0.9].sort_values("centre_time_utc")
    if len(df) < n:
        raise ValueError(f"demo: only {len(df)} full pass(es) of {tile} after {first:%Y-%m-%d};"
                         f" lower demo.n_scenes (got {n})")
    return [(str(r.satellite), pd.Timestamp(r.centre_time_utc).floor("ms"))
            for r in df.head(n).itertuples()]


def window_geobox(cfg: DemoConfig) -> GeoBox:
    """The rendered 10 m window: ``window_px``² of the real tile grid around the centre."""
    tile = tile_geobox(cfg.tile, resolution=10)
    if cfg.window_px >= tile.width:
        return tile
    to_utm = Transformer.from_crs(4326, geobox_epsg(tile), always_xy=True)
    x, y = to_utm.transform(cfg.centre_lon, cfg.centre_lat)
    t = tile.transform
    col = int((x - t.c) / t.a)
    row = int((y - t.f) / t.e)
    half = cfg.window_px // 2
    col0 = int(np.clip(col - half, 0, tile.width - cfg.window_px)) // 2 * 2
    row0 = int(np.clip(row - half, 0, tile.height - cfg.window_px)) // 2 * 2
    return GeoBox((cfg.window_px, cfg.window_px),
                  Affine(t.a, 0, t.c + col0 * t.a, 0, t.e, t.f + row0 * t.e), tile.crs)


def _coast(rng: np.random.Generator, gbox: GeoBox) -> Coast:
    x0, y0, x1, y1 = gbox.boundingbox
    h = y1 - y0
    return Coast(north_y=y0 + 0.70 * h, south_y=y0 + 0.28 * h,
                 amps=(0.05 * h, 0.02 * h, 0.008 * h),
                 wavelengths=(1.3 * (x1 - x0), 0.37 * (x1 - x0), 0.09 * (x1 - x0)),
                 phases_n=tuple(rng.uniform(0, 2 * np.pi, 3)),
                 phases_s=tuple(rng.uniform(0, 2 * np.pi, 3)))


def _clouds(rng: np.random.Generator, gbox: GeoBox, over: list[tuple[float, float]]) -> CloudField:
    x0, y0, x1, y1 = gbox.boundingbox
    span = x1 - x0
    n = int(rng.integers(3, 7))
    cx = list(rng.uniform(x0, x1, n))
    cy = list(rng.uniform(y0, y1, n))
    radius = list(rng.uniform(0.015, 0.05, n) * span)
    weight = list(rng.uniform(0.3, 1.3, n))
    for x, y in over:  # deliberately cloud over some ships
        cx.append(x + rng.uniform(-100, 100))
        cy.append(y + rng.uniform(-100, 100))
        radius.append(float(rng.uniform(500, 900)))
        weight.append(1.2)
    return CloudField(np.array(cx), np.array(cy), np.array(radius), np.array(weight))


def build_world(root: str | Path, cfg: DemoConfig | None = None, *, force: bool = False,
                progress: Callable[[int, int, str], None] | None = None) -> World:
    """Render (or reuse) the embedded world under ``root``; computes eagerly, writes files.
    ``progress(done, total, "scenes rendered")`` is called after each scene."""
    cfg = cfg or DemoConfig()
    root = Path(root)
    fp = _fingerprint(cfg)
    manifest_path = root / DatasetLayout.WORLD_MANIFEST
    gbox = window_geobox(cfg)
    if manifest_path.is_file() and not force:
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("fingerprint") == fp:
            log.info("reusing embedded world at %s (%d items)", root, len(manifest["items"]))
            return World(root=root, tile=manifest["tile"], epsg=manifest["epsg"], window=gbox,
                         item_ids=tuple(manifest["items"]))
    if root.exists():
        for sub in ("scenes", "stac", "ais", "truth"):
            shutil.rmtree(root / sub, ignore_errors=True)
    rng = np.random.default_rng(cfg.seed)
    epsg = geobox_epsg(gbox)
    x0, y0 = gbox.transform.c, gbox.transform.f
    coast = _coast(rng, gbox)
    fleet = make_fleet(rng, cfg.n_ships)
    passes = real_passes(cfg.tile, pd.Timestamp(cfg.first_date, tz="UTC"), cfg.n_scenes)
    items: list[dict[str, Any]] = []
    truth_rows: list[pd.DataFrame] = []
    fixes: list[pd.DataFrame] = []
    log.info("building embedded world: tile %s, %d² px window, %d scenes, %d ships",
             cfg.tile, gbox.width, cfg.n_scenes, cfg.n_ships)
    for k in range(cfg.n_scenes):
        sensing = passes[k][1]
        bb = gbox.boundingbox
        positions = place_ships(rng, fleet, coast, (bb.left, bb.bottom, bb.right, bb.top))
        moving = rng.random(len(fleet)) > 0.15
        speeds = np.where(moving, rng.uniform(2.0, 9.0, len(fleet)), 0.0)
        headings = rng.uniform(0, 360, len(fleet))
        draws = ship_draws(fleet, positions, headings, speeds)
        in_water = [i for i, p in enumerate(positions) if p[2] == "water"]
        cloudy = list(rng.choice(in_water, size=min(2, len(in_water)), replace=False))
        clouds = _clouds(rng, gbox, [positions[i][:2] for i in cloudy])
        model = SceneModel(coast=coast, clouds=clouds, ships=tuple(draws),
                           noise_seed=cfg.seed + k, nodata_corner=(k == cfg.n_scenes - 1))
        sat = passes[k][0][-2:]
        platform = f"sentinel-{sat.lower()}"
        scene_id = f"S{sat[-2:]}_{cfg.tile}_{sensing:%Y%m%d}"
        paths = render_scene(model, root / "scenes" / scene_id, x0, y0, gbox.width, epsg)
        scl = model.scl(x0, y0, 20.0, (0, gbox.height // 2), gbox.width // 2, (x0, y0))
        valid = scl > 0
        cloud_cover = 100.0 * float(np.isin(scl[valid], (8, 9, 10)).mean())
        item = make_item(tile=cfg.tile, platform=platform, sensing=sensing, sequence=0,
                         baseline="05.11", gbox10=gbox, paths=paths, cloud_cover=cloud_cover,
                         collection=COLLECTION)
        items.append(item)
        if k == 0:  # a reprocessed duplicate of the first datatake (newer baseline)
            items.append(make_item(tile=cfg.tile, platform=platform, sensing=sensing,
                                   sequence=1, baseline="05.12", gbox10=gbox, paths=paths,
                                   cloud_cover=cloud_cover, collection=COLLECTION))
        to_ll = Transformer.from_crs(epsg, 4326, always_xy=True)
        lon, lat = to_ll.transform([d.x for d in draws], [d.y for d in draws])
        scene_items = [it["id"] for it in items if it["properties"]["datetime"] ==
                       item["properties"]["datetime"]]
        truth_rows.extend(pd.DataFrame({
            "item_id": iid, "sensing_time": sensing,
            "mmsi": [s.mmsi for s in fleet], "x": [d.x for d in draws],
            "y": [d.y for d in draws], "lon": lon, "lat": lat,
            "heading": [d.heading for d in draws], "speed_ms": [d.speed_ms for d in draws],
            "to_bow": [d.to_bow for d in draws], "to_stern": [d.to_stern for d in draws],
            "to_port": [d.to_port for d in draws],
            "to_starboard": [d.to_starboard for d in draws],
            "has_static": [s.has_static for s in fleet],
            "placement": [p[2] for p in positions],
            "under_cloud": [i in cloudy for i in range(len(fleet))],
            "epsg": epsg}) for iid in scene_items)
        fixes.append(make_fixes(rng, fleet, draws, sensing, epsg))
        if progress:
            progress(k + 1, cfg.n_scenes, "scenes rendered")
    (root / "stac").mkdir(parents=True, exist_ok=True)
    _atomic_json(root / "stac" / "items.json", {"type": "FeatureCollection", "features": items})
    _atomic_json(root / "stac" / "collection.json", make_collection(COLLECTION, items))
    (root / "ais").mkdir(parents=True, exist_ok=True)
    ais = pd.concat(fixes, ignore_index=True).sort_values(["time", "mmsi"], kind="stable")
    ais["time"] = ais["time"].dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    ais.to_csv(root / "ais" / "demo_ais.csv.tmp", index=False, float_format="%.8f")
    (root / "ais" / "demo_ais.csv.tmp").replace(root / "ais" / "demo_ais.csv")
    (root / "truth").mkdir(parents=True, exist_ok=True)
    pd.concat(truth_rows, ignore_index=True).to_parquet(root / "truth" / "ships.parquet")
    ids = [it["id"] for it in items]
    _atomic_json(manifest_path, {"fingerprint": fp, "tile": cfg.tile, "epsg": epsg,
                                 "window": [gbox.transform.c, gbox.transform.f, gbox.width],
                                 "items": ids, "config": cfg.model_dump(mode="json"),
                                 "synthetic": True})
    log.info("embedded world ready: %d items, %d AIS fixes", len(ids), len(ais))
    return World(root=root, tile=cfg.tile, epsg=epsg, window=gbox, item_ids=tuple(ids))


def _atomic_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1))
