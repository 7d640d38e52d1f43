"""STAC requests: s2xr's batched search versus one query per point, counted at the server.

    .venv/bin/python benchmarks/stac_requests.py            # 1,000 points, 4 tiles, 3 days
    .venv/bin/python benchmarks/stac_requests.py --quick    # 100 points

A real STAC API (rustac) serves Earth-Search-shaped items for 4 tiles × 3 days on 127.0.0.1
behind a counting proxy. The last line is a JSON object with ``requests_s2xr`` (searches and
pages made by ``search_scenes``), ``requests_per_point_baseline`` and ``tile_days``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from s2xr.config import StacConfig
from s2xr.demo import StacApiServer
from s2xr.demo.items import make_collection, make_item
from s2xr.grid import tile_footprint, tile_geobox, tiles_at_many
from s2xr.scenes import StacApiSource, search_scenes
from s2xr.testing import FaultProxy

TILES = ("30STE", "30STF", "30SUE", "30SUF")
DAY0 = pd.Timestamp("2026-10-01T10:56:00Z")


def build_catalog(root: Path) -> tuple[Path, Path]:
    items = []
    for tile in TILES:
        gb = tile_geobox(tile)
        dummy = {b: root / f"{tile}_{b}.tif" for b in ("blue", "green", "red", "nir",
                                                        "swir16", "swir22", "scl")}
        for d in range(3):
            items.append(make_item(tile=tile, platform=("sentinel-2a", "sentinel-2b",
                                                        "sentinel-2c")[d],
                                   sensing=DAY0 + pd.Timedelta(days=d), sequence=0,
                                   baseline="05.11", gbox10=gb, paths=dummy, cloud_cover=5.0,
                                   collection="sentinel-2-l2a"))
    (root / "items.json").write_text(json.dumps({"type": "FeatureCollection",
                                                 "features": items}))
    (root / "collection.json").write_text(json.dumps(make_collection("sentinel-2-l2a",
                                                                     items)))
    return root / "collection.json", root / "items.json"


def make_points(n: int, rng: np.random.Generator) -> pd.DataFrame:
    """Points inside exactly one of the 4 tiles (so the 4 × 3 tile-days are the groups)."""
    out = []
    while len(out) < n:
        tile = TILES[rng.integers(len(TILES))]
        x0, y0, x1, y1 = tile_footprint(tile).bounds
        lon, lat = rng.uniform(x0, x1), rng.uniform(y0, y1)
        if tiles_at_many(np.array([lon]), np.array([lat]))[0] and \
                tiles_at_many(np.array([lon]), np.array([lat]))[0][0] in TILES:
            out.append((lon, lat, DAY0 + pd.Timedelta(days=int(rng.integers(3)),
                                                     minutes=float(rng.uniform(-10, 10)))))
    df = pd.DataFrame(out, columns=["lon", "lat", "time"])
    df["mmsi"] = 224000000 + np.arange(n)
    return df


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--points", type=int, default=None)
    args = ap.parse_args()
    n = args.points or (100 if args.quick else 1000)
    rng = np.random.default_rng(11)
    with tempfile.TemporaryDirectory() as tmp:
        col, items = build_catalog(Path(tmp))
        proxy = FaultProxy("http://127.0.0.1:0")
        with StacApiServer(col, items, public_url=proxy.url) as srv:
            proxy.upstream = srv.url
            with proxy:
                pts = make_points(n, rng)
                cfg = StacConfig(api_url=proxy.url, collection="sentinel-2-l2a",
                                 window_hours=6, page_size=100)
                src = StacApiSource(proxy.url, cfg)
                src._open()
                proxy.reset()
                t = time.perf_counter()
                res = search_scenes(pts, cfg, src)
                t_s2xr = time.perf_counter() - t
                req_s2xr = proxy.counts["/search"]
                proxy.reset()
                t = time.perf_counter()
                found = set()
                for p in pts.itertuples():  # the predecessor's way: one query per point
                    for it in src.search(bbox=(p.lon - 1e-4, p.lat - 1e-4, p.lon + 1e-4,
                                               p.lat + 1e-4),
                                         start=p.time - pd.Timedelta(hours=6),
                                         end=p.time + pd.Timedelta(hours=6),
                                         collection="sentinel-2-l2a"):
                        found.add(it["id"])
                t_base = time.perf_counter() - t
                req_base = proxy.counts["/search"]
    tile_days = int(pts.assign(day=pts.time.dt.floor("D"),
                               tile=[t[0] for t in tiles_at_many(pts.lon.to_numpy(),
                                                                 pts.lat.to_numpy())])
                    [["tile", "day"]].drop_duplicates().shape[0])
    print(f"{n} points over {len(TILES)} tiles × 3 days ({tile_days} tile-days)")
    print(f"  s2xr:     {req_s2xr:5d} search requests, {len(res.items)} items, {t_s2xr:.2f} s")
    print(f"  baseline: {req_base:5d} search requests ({req_base / n:.2f} per point), "
          f"{len(found)} items, {t_base:.2f} s")
    assert {i["id"] for i in res.items} == found, "both ways must find the same items"
    print(json.dumps({"benchmark": "stac_requests", "points": n, "tile_days": tile_days,
                      "requests_s2xr": req_s2xr, "requests_baseline": req_base,
                      "requests_per_point_baseline": req_base / n,
                      "requests_per_tile_day_s2xr": req_s2xr / tile_days,
                      "seconds_s2xr": t_s2xr, "seconds_baseline": t_base}))


if __name__ == "__main__":
    main()
