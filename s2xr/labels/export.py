"""Export the ship labels of a dataset: COCO-style JSON with oriented boxes, YOLO-OBB text files.

Both read ``indexes/tiles.parquet`` (chips that passed the gate) and
``indexes/labels.parquet`` and write per split under ``{root}/exports/`` (or ``out``). An
export directory is built beside its target and renamed into place, so readers never see
half an export. Categories are :data:`~s2xr.labels.boxes.SHIP_CLASSES` (COCO id = position
+ 1, YOLO class = position), the same for every dataset.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from s2xr.labels.boxes import SHIP_CLASSES
from s2xr.store.index import read_index
from s2xr.store.labels import read_labels
from s2xr.store.layout import DatasetLayout, temp_beside
from s2xr.store.objects import cube_at, has_zarr, join, read_bytes

log = logging.getLogger(__name__)


@contextlib.contextmanager
def _swap_dir(target: Path) -> Iterator[Path]:
    """Yield a temp dir beside ``target``; on success it replaces ``target``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_beside(target, directory=True)  # not mkdtemp's 0700: for others to read
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    tmp.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def _chip_size(root: str | Path, index: pd.DataFrame) -> int:
    """Chip edge in pixels (from the cube, else the first chip's JSON sidecar) of the
    dataset whose cube and chip files are at ``root`` (a path or a URL)."""
    if has_zarr(cube_at(root)):
        from s2xr.store.cube import open_chips

        return int(open_chips(root).sizes["x"])
    for p in index["path"].dropna():
        side = read_bytes(join(root, Path(p).with_suffix(".json").as_posix()))
        if side is not None:
            return int(json.loads(side)["chip"]["size"])
    return 256


def _passed(root: Path) -> pd.DataFrame:
    idx = read_index(root)
    if idx.empty:
        return idx
    return idx.loc[idx["qa_pass"].astype(bool)].sort_values("chip_id").reset_index(drop=True)


def _annotation(lab: Any, ann_id: int, image_id: int, size: int) -> dict[str, Any]:
    base = {"id": ann_id, "image_id": image_id,
            "category_id": SHIP_CLASSES.index(lab.ship_class) + 1, "iscrowd": 0,
            "mmsi": int(lab.mmsi), "instance": int(lab.instance),
            "is_target": bool(lab.is_target), "kind": lab.kind,
            "label_flag": lab.label_flag if isinstance(lab.label_flag, str) else None}
    if lab.kind != "box":
        return {**base, "bbox": [float(lab.col), float(lab.row), 0.0, 0.0], "area": 0.0,
                "segmentation": [], "point": [float(lab.col), float(lab.row)], "ignore": 1}
    c = np.asarray(lab.corners_px, float).reshape(4, 2)
    lo = np.clip(c.min(axis=0), 0, size)
    hi = np.clip(c.max(axis=0), 0, size)
    return {**base, "bbox": [float(lo[0]), float(lo[1]), float(hi[0] - lo[0]),
                             float(hi[1] - lo[1])],
            "area": float(lab.length_px * lab.beam_px),
            "segmentation": [[round(float(v), 3) for v in c.ravel()]],
            "obb": [float(lab.cx_px), float(lab.cy_px), float(lab.length_px),
                    float(lab.beam_px), float(lab.grid_heading_deg)],
            "truncated": bool(lab.truncated), "heading_source": lab.heading_source,
            "ignore": 0}


def export_coco(root: str | Path, out: str | Path | None = None, *,
                data_root: str | Path | None = None) -> dict[str, Path]:
    """COCO-style JSON per split (``{out or root/exports}/coco/{split}.json``); returns
    split → path. Reads the index and label table; no Dask. ``data_root``: where the cube
    and chip files are when not under ``root`` (an object store dataset's URL).

    ``images``: id, file_name (the chip's COG, relative to ``root``), quicklook, width,
    height, chip_id, mmsi, scene_id, epsg, transform (GDAL order). ``annotations``: COCO
    ``bbox`` (axis-aligned [x, y, w, h] in pixels, clipped to the chip), ``segmentation``
    (the 4 box corners: bow-port, bow-starboard, stern-starboard, stern-port), ``area``, and
    ``obb`` = [cx, cy, length, beam, angle]: centre and size in pixels, angle = bow bearing
    in degrees clockwise from image up (grid north). Point labels (ships without AIS
    dimensions or heading) have a zero-size ``bbox``, ``point`` [col, row] and ``ignore``
    1. Extra per annotation: mmsi, instance (its ``ship_mask`` value), is_target, kind,
    label_flag, truncated, heading_source."""
    root = Path(root)
    idx = _passed(root)
    labels = read_labels(root)
    size = _chip_size(root if data_root is None else data_root, idx) if len(idx) else 256
    by_chip = dict(tuple(labels.groupby("chip_id"))) if len(labels) else {}
    cats = [{"id": k + 1, "name": n, "supercategory": "ship"}
            for k, n in enumerate(SHIP_CLASSES)]
    target = Path(out) if out else DatasetLayout(root).exports
    paths: dict[str, Path] = {}
    with _swap_dir(target / "coco") as tmp:
        for split, chips in idx.groupby("split"):
            images: list[dict[str, Any]] = []
            anns: list[dict[str, Any]] = []
            for img_id, ch in enumerate(chips.itertuples(), start=1):
                side = json.loads((root / ch.path).with_suffix(".json").read_text()) \
                    if (root / ch.path).with_suffix(".json").is_file() else {}
                c = side.get("chip", {})
                res = float(c.get("resolution_m", 10.0))
                images.append({
                    "id": img_id, "file_name": ch.path,
                    "quicklook": str(Path(ch.path).with_suffix(".jpg")), "width": size,
                    "height": size, "chip_id": ch.chip_id, "mmsi": int(ch.mmsi),
                    "scene_id": ch.scene_id, "epsg": int(ch.epsg),
                    "transform": [res, 0.0, c.get("x_left"), 0.0, -res, c.get("y_top")]})
                for lab in by_chip.get(ch.chip_id, pd.DataFrame()).itertuples():
                    anns.append(_annotation(lab, len(anns) + 1, img_id, size))
            doc = {"info": {"description": f"s2xr ship labels ({split})",
                            "date_created": pd.Timestamp.now(tz="UTC").isoformat(),
                            "obb": "[cx, cy, length, beam, angle_deg]; pixels; angle = bow "
                                   "clockwise from image up"},
                   "images": images, "annotations": anns, "categories": cats}
            (tmp / f"{split}.json").write_text(json.dumps(doc, default=str))
            paths[str(split)] = target / "coco" / f"{split}.json"
    log.info("COCO export: %s", {k: str(v) for k, v in paths.items()})
    return paths


def _yolo_lines(labels: pd.DataFrame, size: int) -> list[str]:
    lines = []
    for lab in labels.loc[labels["kind"] == "box"].itertuples():
        c = np.clip(np.asarray(lab.corners_px, float) / size, 0.0, 1.0)
        lines.append(f"{SHIP_CLASSES.index(lab.ship_class)} " +
                     " ".join(f"{v:.6f}" for v in c))
    return lines


def export_yolo_obb(root: str | Path, out: str | Path | None = None, *,
                    link_images: bool = True,
                    data_root: str | Path | None = None) -> dict[str, Path]:
    """YOLO-OBB (Ultralytics) labels under ``{out or root/exports}/yolo-obb/``; returns
    split → labels directory. Reads the index and label table; no Dask.

    ``labels/{split}/{chip_id}.txt``: one line per box, ``class x1 y1 x2 y2 x3 y3 x4 y4``
    (corners normalised by the chip size and clipped to [0, 1]; class = index in
    ``names``); chips without a box get an empty file (background). Point labels are not
    exported (no box). ``images/{split}/{chip_id}.jpg`` are relative symlinks to the RGB
    quicklooks when ``link_images`` (Ultralytics finds labels by swapping ``images`` for
    ``labels``); ``data.yaml`` names the splits and classes. ``data_root``: where the cube
    and chip files are when not under ``root`` (an object store dataset's URL: no images
    can be linked then)."""
    import yaml

    root = Path(root)
    idx = _passed(root)
    labels = read_labels(root)
    size = _chip_size(root if data_root is None else data_root, idx) if len(idx) else 256
    by_chip = dict(tuple(labels.groupby("chip_id"))) if len(labels) else {}
    target = Path(out) if out else DatasetLayout(root).exports
    final = target / "yolo-obb"
    paths: dict[str, Path] = {}
    with _swap_dir(final) as tmp:
        for split, chips in idx.groupby("split"):
            lab_dir = tmp / "labels" / str(split)
            img_dir = tmp / "images" / str(split)
            lab_dir.mkdir(parents=True)
            img_dir.mkdir(parents=True)
            for ch in chips.itertuples():
                rows = by_chip.get(ch.chip_id)
                text = "\n".join(_yolo_lines(rows, size)) if rows is not None else ""
                (lab_dir / f"{ch.chip_id}.txt").write_text(text + ("\n" if text else ""))
                jpg = (root / ch.path).with_suffix(".jpg")
                if link_images and jpg.is_file():
                    rel = os.path.relpath(os.path.abspath(jpg),
                                          os.path.abspath(final / "images" / str(split)))
                    (img_dir / f"{ch.chip_id}.jpg").symlink_to(rel)
            paths[str(split)] = final / "labels" / str(split)
        data = {"path": str(final.resolve()),
                **{s: f"images/{s}" for s in sorted(paths)},
                "names": dict(enumerate(SHIP_CLASSES))}
        (tmp / "data.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    log.info("YOLO-OBB export: %s", final)
    return paths
