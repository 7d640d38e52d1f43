"""Ship labels from AIS at sensing time, checked against the hulls the embedded world rendered.

The rendered hull footprint is computed here from ``world.truth()`` with the renderer's own
hull function (``s2xr.demo.render.hull_mask``), independent of ``s2xr.labels``; both sides use
the documented pixel rule (hull covers ≥ half the pixel, or its centre line crosses it).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import shapely
from click.testing import CliRunner
from pyproj import Transformer
from scipy.ndimage import binary_dilation

from pipelines.chip_job import run_chip_job
from pipelines.cli import main
from s2xr.config import build_config
from s2xr.demo.render import ShipDraw, hull_mask
from s2xr.labels import (
    export_coco,
    export_yolo_obb,
    label_chips,
    rasterize_ship_mask,
    ship_states,
)
from s2xr.labels.boxes import LABEL_COLUMNS
from s2xr.store import open_chips, read_index
from s2xr.store.labels import read_labels

SS = 4  # sub-samples per pixel side, as documented for ship_mask


@pytest.fixture(scope="module")
def labelled_run(world, stac_server, tmp_path_factory):
    root = tmp_path_factory.mktemp("labels")
    cfg = build_config({"stac": {"api_url": stac_server.url, "collection": "sentinel-2-l2a",
                                 "window_hours": 6}, "storage": {"root": str(root)}},
                       environ={}, dotenv_path=None)
    res = run_chip_job(cfg, world.ais_path)
    cube = open_chips(root)
    cube = cube[["ship_mask"]].assign_coords(
        {c: cube[c].load() for c in ("chip_id", "item_id", "x_left", "y_top")}).load()
    return root, res, cube, read_labels(root)


def rendered_footprint(t, x_left: float, y_top: float, size: int = 256,
                       res: float = 10.0) -> np.ndarray:
    """Pixels of the truth hull ``t`` (a world.truth() row) on a chip grid (bool y, x)."""
    draw = ShipDraw(x=t.x, y=t.y, heading=t.heading, to_bow=t.to_bow, to_stern=t.to_stern,
                    to_port=t.to_port, to_starboard=t.to_starboard, speed_ms=t.speed_ms)
    fp = np.zeros((size, size), bool)
    reach = t.to_bow + t.to_stern + t.to_port + t.to_starboard + 2 * res
    c0, c1 = max(int((t.x - reach - x_left) // res), 0), min(int((t.x + reach - x_left)
                                                                 // res) + 1, size)
    r0, r1 = max(int((y_top - t.y - reach) // res), 0), min(int((y_top - t.y + reach)
                                                                // res) + 1, size)
    if c0 >= c1 or r0 >= r1:
        return fp
    offs = (np.arange(SS) + 0.5) / SS
    xs = x_left + (np.arange(c0, c1)[:, None] + offs).ravel() * res
    ys = y_top - (np.arange(r0, r1)[:, None] + offs).ravel() * res
    xx, yy = np.meshgrid(xs, ys)
    cover = np.zeros((size, size))
    cover[r0:r1, c0:c1] = hull_mask(draw, xx, yy).reshape(r1 - r0, SS, c1 - c0, SS).mean(
        axis=(1, 3))
    fp = cover >= 0.5
    h = np.deg2rad(t.heading)
    length = t.to_bow + t.to_stern
    u = -t.to_stern + (np.arange(400) + 0.5) * length / 400
    v = (t.to_starboard - t.to_port) / 2
    kx = t.x + u * np.sin(h) + v * np.cos(h)
    ky = t.y + u * np.cos(h) - v * np.sin(h)
    c = np.floor((kx - x_left) / res).astype(int)
    r = np.floor((y_top - ky) / res).astype(int)
    ok = (c >= 0) & (c < size) & (r >= 0) & (r < size)
    fp[r[ok], c[ok]] = True
    if not fp.any() and cover.max() > 0:
        fp = cover == cover.max()
    return fp


def truth_polygon(t) -> shapely.Polygon:
    """The rendered hull rectangle of a world.truth() row (UTM)."""
    h = np.deg2rad(t.heading)
    bow, stb = np.array([np.sin(h), np.cos(h)]), np.array([np.cos(h), -np.sin(h)])
    ant = np.array([t.x, t.y])
    return shapely.Polygon([ant + u * bow + v * stb for u, v in (
        (t.to_bow, -t.to_port), (t.to_bow, t.to_starboard), (-t.to_stern, t.to_starboard),
        (-t.to_stern, -t.to_port))])


def test_every_rendered_hull_is_covered_by_its_mask(labelled_run, world):
    """Every hull with static data that touches a chip is labelled there; hulls inside the
    chip: mask IoU ≥ 0.5 against the rendered footprint; hulls cut by the chip edge (where
    IoU over a pixel or two means nothing): flagged ``truncated``, mask pixels within 1 px of
    the rendered ones, and box polygon IoU ≥ 0.5 against the rendered hull."""
    _, _, cube, labels = labelled_run
    truth = world.truth()
    by_chip = dict(tuple(labels.groupby("chip_id")))
    ious, multi, cut = [], 0, 0
    for k, cid in enumerate(cube.chip_id.values):
        x_left, y_top = float(cube.x_left[k]), float(cube.y_top[k])
        square = shapely.box(x_left, y_top - 2560, x_left + 2560, y_top)
        mask = cube.ship_mask.values[k]
        lab = by_chip.get(cid, pd.DataFrame(columns=LABEL_COLUMNS)).set_index("mmsi")
        ships = truth.loc[(truth.item_id == cube.item_id.values[k]) & truth.has_static]
        n_here = 0
        for t in ships.itertuples():
            fp = rendered_footprint(t, x_left, y_top)
            if not fp.any():
                continue  # the hull does not touch this chip
            n_here += 1
            assert t.mmsi in lab.index, f"chip {cid}: ship {t.mmsi} in the footprint unlabelled"
            mine = mask == lab.loc[t.mmsi, "instance"]
            if square.contains(truth_polygon(t)):
                iou = (fp & mine).sum() / (fp | mine).sum()
                ious.append(iou)
                assert iou >= 0.5, f"chip {cid} ship {t.mmsi}: IoU {iou:.2f}"
            else:
                cut += 1
                assert bool(lab.loc[t.mmsi, "truncated"])
                assert not (mine & ~binary_dilation(fp, np.ones((3, 3), bool))).any()
                box = shapely.from_wkt(lab.loc[t.mmsi, "polygon_wkt"])
                hull = truth_polygon(t)
                assert box.intersection(hull).area / box.union(hull).area >= 0.5
        multi += n_here > 1
    assert len(ious) > len(cube.chip_id), "expected ships beyond the centred ones"
    assert multi > 0 and cut > 0
    # the mask holds nothing but labelled boxes
    for k, cid in enumerate(cube.chip_id.values):
        vals = set(np.unique(cube.ship_mask.values[k])) - {0}
        boxes = by_chip[cid]
        assert vals <= set(boxes.loc[boxes.kind == "box", "instance"])


def test_box_headings_and_sizes_match_the_rendered_ships(labelled_run, world):
    _, _, _, labels = labelled_run
    truth = world.truth()
    boxes = labels.loc[labels.kind == "box"]
    assert len(boxes) > 0
    t = truth.set_index(["item_id", "mmsi"])
    idx = read_index(labelled_run[0]).set_index("chip_id")
    key = list(zip(idx.loc[boxes.chip_id, "scene_id"], boxes.mmsi, strict=True))
    tt = t.loc[key]
    diff = np.abs((boxes.grid_heading_deg.to_numpy() - tt.heading.to_numpy() + 180) % 360 - 180)
    assert (diff <= 10).all(), np.sort(diff)[-5:]
    boxes_geo = shapely.from_wkt(boxes.polygon_wkt.to_numpy())
    hulls = [truth_polygon(r) for r in tt.itertuples()]
    iou = [b.intersection(h).area / b.union(h).area for b, h in zip(boxes_geo, hulls,
                                                                   strict=True)]
    assert min(iou) >= 0.5, min(iou)
    np.testing.assert_allclose(boxes.length_m, tt.to_bow + tt.to_stern)
    np.testing.assert_allclose(boxes.beam_m, tt.to_port + tt.to_starboard)
    # the antenna is where the ship was at sensing time
    fwd = Transformer.from_crs(4326, int(boxes.epsg.iloc[0]), always_xy=True)
    x, y = fwd.transform(boxes.lon.to_numpy(), boxes.lat.to_numpy())
    assert np.hypot(x - tt.x.to_numpy(), y - tt.y.to_numpy()).max() < 15


def test_ships_without_static_data_get_flagged_points(labelled_run, world):
    _, _, cube, labels = labelled_run
    truth = world.truth()
    no_static = set(truth.loc[~truth.has_static, "mmsi"])
    pts = labels.loc[labels.mmsi.isin(no_static)]
    assert len(pts) > 0
    assert (pts.kind == "point").all() and (pts.label_flag == "no_static_dimensions").all()
    assert pts.length_m.isna().all() and pts.corners_px.isna().all()
    for r in pts.itertuples():
        k = int(np.flatnonzero(cube.chip_id.values == r.chip_id)[0])
        assert not (cube.ship_mask.values[k] == r.instance).any()
        assert 0 <= r.col < 256 and 0 <= r.row < 256


def test_labels_agree_across_json_index_and_table(labelled_run):
    root, res, cube, labels = labelled_run
    idx = read_index(root)
    passed = idx.loc[idx.qa_pass]
    assert len(passed) == res.n_passed and passed.n_ships.notna().all()
    counts = labels.groupby("chip_id").size()
    assert (passed.set_index("chip_id").n_ships == counts.reindex(passed.chip_id)).all()
    assert cube.ship_mask.dtype == np.uint8 and cube.ship_mask.dims == ("chip", "y", "x")
    for row in passed.head(10).itertuples():
        side = json.loads((root / row.path).with_suffix(".json").read_text())
        assert side["n_ships"] == row.n_ships == len(side["labels"])
        own = [lab for lab in side["labels"] if lab["is_target"]]
        assert len(own) == 1 and own[0]["instance"] == 1 and own[0]["mmsi"] == row.mmsi
        for lab in side["labels"]:
            if lab["kind"] == "box":
                assert len(lab["corners_px"]) == 4 and lab["polygon"]["type"] == "Polygon"
                poly = shapely.geometry.shape(lab["polygon"])
                assert poly.area == pytest.approx(lab["length_m"] * lab["beam_m"], rel=1e-3)


def test_box_is_placed_around_the_antenna():
    """Heading 90° (east) on the central meridian: bow 80 m east, stern 20 m west, port
    5 m north, starboard 15 m south of the antenna."""
    epsg = 32630
    to_utm = Transformer.from_crs(4326, epsg, always_xy=True)
    lon, lat = -3.0, 36.0  # zone 30's central meridian: grid north = true north
    x, y = to_utm.transform(lon, lat)
    plan = pd.DataFrame({"chip_id": ["c1"], "mmsi": [1], "item_id": ["i"], "epsg": [epsg],
                         "x_left": [x - 1280.0], "y_top": [y + 1280.0]})
    ships = pd.DataFrame({"mmsi": [1, 2], "item_id": "i", "lat": [lat, lat],
                          "lon": [lon, lon + 0.005], "heading_deg": [90.0, 0.0],
                          "heading_source": "heading", "sog": 5.0, "to_bow": [80.0, np.nan],
                          "to_stern": [20.0, np.nan], "to_port": [5.0, np.nan],
                          "to_starboard": [15.0, np.nan], "ship_type": [70, pd.NA],
                          "method": "interpolated", "gap_s": 1.0, "uncertainty_m": 5.0})
    lab = label_chips(plan, ships, size=256, res=10.0).set_index("mmsi")
    b = lab.loc[1]
    assert b.kind == "box" and b.instance == 1 and bool(b.is_target)
    assert b.grid_heading_deg == pytest.approx(90.0, abs=1e-3)
    assert b.cx - x == pytest.approx(30.0, abs=1e-3)  # (80 - 20) / 2 ahead
    assert b.cy - y == pytest.approx(-5.0, abs=1e-3)  # (15 - 5) / 2 to starboard = south
    poly = shapely.from_wkt(b.polygon_wkt)
    assert poly.bounds == pytest.approx((x - 20, y - 15, x + 80, y + 5), abs=1e-3)
    assert (b.cx_px, b.cy_px) == pytest.approx((128 + 3.0, 128 + 0.5), abs=1e-3)
    p = lab.loc[2]
    assert p.kind == "point" and p.label_flag == "no_static_dimensions" and p.instance == 2
    mask = rasterize_ship_mask(lab.reset_index())
    rows, cols = np.nonzero(mask == 1)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (127, 129, 126, 135)
    assert not (mask == 2).any()


def test_coco_and_yolo_obb_exports(labelled_run, tmp_path):
    root, _, _, labels = labelled_run
    coco = export_coco(root, tmp_path)
    idx = read_index(root)
    passed = idx.loc[idx.qa_pass]
    assert set(coco) == set(passed.split)
    n_img = n_ann = 0
    for split, path in coco.items():
        doc = json.loads(path.read_text())
        n_img += len(doc["images"])
        n_ann += len(doc["annotations"])
        assert {i["chip_id"] for i in doc["images"]} == set(passed.loc[passed.split == split,
                                                                      "chip_id"])
        for a in doc["annotations"]:
            if a["kind"] == "box":
                seg = np.array(a["segmentation"][0]).reshape(4, 2)
                cx, cy, length, beam, _ = a["obb"]
                assert seg.mean(axis=0) == pytest.approx([cx, cy], abs=1e-2)
                assert np.linalg.norm(seg[0] - seg[3]) == pytest.approx(length, abs=1e-2)
                assert np.linalg.norm(seg[0] - seg[1]) == pytest.approx(beam, abs=1e-2)
            else:
                assert a["ignore"] == 1 and a["area"] == 0
    assert n_img == len(passed) and n_ann == len(labels)
    res = CliRunner().invoke(main, ["export-labels", "--out", str(root), "--format",
                                    "yolo-obb", "--dest", str(tmp_path)])
    assert res.exit_code == 0, res.output
    ydir = tmp_path / "yolo-obb"
    lines = 0
    for txt in (ydir / "labels").rglob("*.txt"):
        for line in txt.read_text().splitlines():
            parts = line.split()
            assert len(parts) == 9 and 0 <= int(parts[0]) <= 10
            assert all(0.0 <= float(v) <= 1.0 for v in parts[1:])
            lines += 1
    assert lines == int((labels.kind == "box").sum())
    assert len(list((ydir / "labels").rglob("*.txt"))) == len(passed)
    assert all(p.resolve().is_file() for p in (ydir / "images").rglob("*.jpg"))
    assert (ydir / "data.yaml").is_file()
    # exporting again replaces the directory (no stale files)
    export_yolo_obb(root, tmp_path)
    assert len(list((ydir / "labels").rglob("*.txt"))) == len(passed)


def test_heading_is_true_heading_else_cog():
    t0 = pd.Timestamp("2026-10-01T10:00:00Z")
    points = pd.DataFrame({"mmsi": [1, 1, 2, 3], "time": [t0, t0 + pd.Timedelta("1min"),
                                                        t0, t0],
                           "heading": [45.0, np.nan, np.nan, np.nan],
                           "cog": [40.0, 41.0, 120.0, np.nan], "sog": [5.0, 5.0, 6.0, 0.0]})
    positioned = pd.DataFrame({"mmsi": [1, 1, 2, 3], "item_id": ["a", "b", "a", "a"],
                               "lat": 36.0, "lon": -5.0,
                               "ais_time": [t0, t0 + pd.Timedelta("1min"), t0, t0],
                               "method": "interpolated"})
    got = ship_states(positioned, points)
    assert got.heading_deg.iloc[:3].tolist() == [45.0, 41.0, 120.0]
    assert got.heading_source.tolist() == ["heading", "cog", "cog", "none"]
    assert np.isnan(got.heading_deg.iloc[3])
