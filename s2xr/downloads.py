"""Files to hand over from a local dataset, e.g. from the dashboard's download buttons:
the chip index (GeoParquet or CSV), the ship labels (a COCO or YOLO-OBB zip), the STAC
catalog (a zip) and a subset of the chips (a zip of their files and index rows).

Each call writes its file under ``{root}/exports/downloads/`` (temp file, then renamed) and
returns the path. Zips keep the dataset's relative paths: extracted into the dataset root
(or anywhere, for the chips zip), every relative href and ``path`` still resolves.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

import geopandas as gpd
import pandas as pd

from s2xr.store.index import read_index
from s2xr.store.layout import DatasetLayout, atomic_write

log = logging.getLogger(__name__)

DOWNLOADS = "downloads"
CHIP_SUFFIXES = (".tif", ".json", ".geojson", ".jpg")


def downloads_dir(root: str | Path) -> Path:
    """``{root}/exports/downloads``: where the download files are written."""
    return DatasetLayout(Path(root)).exports / DOWNLOADS


def _zip(dest: Path, members: Iterable[tuple[Path, str]]) -> Path:
    """Write ``(file, name in the zip)`` pairs as ``dest`` (compressed; symlinks followed)."""
    def write(tmp: Path) -> None:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
            for path, name in members:
                z.write(path, name)

    atomic_write(dest, write)
    return dest


def index_download(root: str | Path, fmt: Literal["parquet", "csv"] = "parquet") -> Path:
    """The chip index as GeoParquet (``tiles.parquet``, as stored) or CSV (``tiles.csv``:
    every column, the footprint as WKT in ``geometry``). Raises ``FileNotFoundError``
    before the first chip."""
    root = Path(root)
    index = DatasetLayout(root).index
    if not index.exists():
        raise FileNotFoundError(f"no chip index at {index} yet: run a job first")
    dest = downloads_dir(root) / Path(DatasetLayout.INDEX).with_suffix(f".{fmt}").name
    if fmt == "parquet":
        def copy(p: Path) -> None:
            shutil.copyfile(index, p)

        atomic_write(dest, copy)
    else:
        idx = read_index(root)
        atomic_write(dest, lambda p: _write_csv(idx, p))
    return dest


def _write_csv(rows: gpd.GeoDataFrame, path: Path) -> None:
    """``rows`` as CSV, the geometry as WKT at full precision."""
    frame = pd.DataFrame(rows.drop(columns="geometry"))
    frame.assign(geometry=rows.geometry.to_wkt(rounding_precision=-1)).to_csv(path, index=False)


def labels_download(root: str | Path, fmt: Literal["coco", "yolo-obb"] = "coco") -> Path:
    """The ship labels exported as COCO JSON per split or YOLO-OBB (labels, ``data.yaml``
    and the quicklook images), zipped: ``labels-{fmt}.zip``."""
    from s2xr.labels import export_coco, export_yolo_obb

    root = Path(root)
    with tempfile.TemporaryDirectory(prefix="s2xr-labels-") as tmp:
        paths = (export_coco(root, tmp) if fmt == "coco" else export_yolo_obb(root, tmp))
        if not paths:
            raise FileNotFoundError(f"no chips in the index of {root}: no labels to export")
        base = Path(tmp)
        files = sorted(p for p in base.rglob("*") if p.is_file())
        return _zip(downloads_dir(root) / f"labels-{fmt}.zip",
                    [(p, p.relative_to(base).as_posix()) for p in files])


def stac_download(root: str | Path) -> Path:
    """The STAC catalog of the passed chips, published now into ``{root}/stac`` (as ``s2xr
    publish-stac`` does, relative hrefs) and zipped with its ``stac/`` prefix:
    ``stac-catalog.zip``, to extract into the dataset root."""
    from s2xr.store.stac import publish_stac

    root = Path(root)
    catalog = publish_stac(root)
    stac = catalog.parent
    files = sorted(p for p in stac.rglob("*") if p.is_file())
    return _zip(downloads_dir(root) / "stac-catalog.zip",
                [(p, p.relative_to(root).as_posix()) for p in files])


def chips_download(root: str | Path, chip_ids: Sequence[str]) -> Path:
    """The files of the chips ``chip_ids`` (COG, JSON, GeoJSON, quicklook; rejected chips
    have none) under their dataset paths, plus their index rows as ``index.parquet``
    (GeoParquet) and ``index.csv``: ``chips-{n}.zip``. Raises ``ValueError`` for no chip."""
    root = Path(root)
    if not len(chip_ids):
        raise ValueError("no chips selected: nothing to download")
    idx = read_index(root)
    rows = idx.loc[idx["chip_id"].isin(set(chip_ids))].reset_index(drop=True)
    members: list[tuple[Path, str]] = []
    for rel in rows["path"].dropna():
        stem = (root / str(rel)).with_suffix("")
        for suffix in CHIP_SUFFIXES:
            f = stem.with_suffix(suffix)
            if f.is_file():
                members.append((f, f.relative_to(root).as_posix()))
    with tempfile.TemporaryDirectory(prefix="s2xr-chips-") as tmp:
        pq_path, csv_path = Path(tmp) / "index.parquet", Path(tmp) / "index.csv"
        rows.to_parquet(pq_path, index=False)
        _write_csv(rows, csv_path)
        dest = _zip(downloads_dir(root) / f"chips-{len(rows)}.zip",
                    [(pq_path, "index.parquet"), (csv_path, "index.csv"), *members])
    log.info("download %s: %d chip(s), %d file(s)", dest, len(rows), len(members))
    return dest
