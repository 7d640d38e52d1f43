"""Download files of a dataset (s2xr.store.downloads): the index as GeoParquet and CSV, the
labels, the STAC catalog and a chip subset as zips — each opens with the tool a user would
use (geopandas, pandas, json, zipfile, pystac) and holds what the dataset holds."""

from __future__ import annotations

import json
import zipfile

import geopandas as gpd
import pandas as pd
import pystac
import pytest
from test_write_chips import PASSED, write

from s2xr.downloads import (
    chips_download,
    index_download,
    labels_download,
    stac_download,
)
from s2xr.store import read_index


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("ds")
    write(root)
    return root


def test_the_index_downloads_as_geoparquet_and_as_csv(root):
    idx = read_index(root)
    gpq = gpd.read_parquet(index_download(root, "parquet"))
    pd.testing.assert_frame_equal(gpq, idx)
    csv = pd.read_csv(index_download(root, "csv"))
    assert list(csv["chip_id"]) == list(idx["chip_id"])
    back = gpd.GeoSeries.from_wkt(csv["geometry"], crs="EPSG:4326")
    assert back.geom_equals_exact(idx.geometry, tolerance=1e-9).all()


def test_a_chip_subset_zips_its_files_and_index_rows(root):
    idx = read_index(root)
    passed = idx.loc[idx["qa_pass"]]
    pick = list(passed["chip_id"].iloc[:2]) + list(idx.loc[~idx["qa_pass"], "chip_id"][:1])
    with zipfile.ZipFile(chips_download(root, pick)) as z:
        names = set(z.namelist())
        assert z.testzip() is None
        with z.open("index.parquet") as f:
            rows = gpd.read_parquet(f)
    assert set(rows["chip_id"]) == set(pick)
    for rel in passed.loc[passed["chip_id"].isin(pick), "path"]:
        stem = rel.rsplit(".", 1)[0]
        assert {f"{stem}{s}" for s in (".tif", ".json", ".geojson", ".jpg")} <= names
    chip_files = [n for n in names if n.startswith("chips/")]
    assert len(chip_files) == 8  # the rejected chip has no files
    with pytest.raises(ValueError, match="no chips selected"):
        chips_download(root, [])


def test_the_stac_catalog_and_the_labels_download_as_zips(root, tmp_path):
    with zipfile.ZipFile(stac_download(root)) as z:
        z.extractall(tmp_path / "x")
    cat = pystac.Catalog.from_file(str(tmp_path / "x" / "stac" / "catalog.json"))
    items = list(cat.get_items(recursive=True))
    assert len(items) == len(PASSED)
    href = items[0].assets["data"].href
    assert href.startswith("../") and href.endswith(".tif")  # relative: extract into the root
    with zipfile.ZipFile(labels_download(root, "coco")) as z:
        coco = {n: json.loads(z.read(n)) for n in z.namelist() if n.endswith(".json")}
    assert coco and sum(len(c["images"]) for c in coco.values()) == len(PASSED)
    with zipfile.ZipFile(labels_download(root, "yolo-obb")) as z:
        names = z.namelist()
    assert any(n.endswith("data.yaml") for n in names)
    assert sum(n.endswith(".jpg") for n in names) == len(PASSED)  # images, not symlinks
