"""The published STAC catalog and stac-geoparquet move with the dataset (relative hrefs,
``collection`` set), ``--absolute [--base-url URL]`` rewrites every href (links and assets, in
both), and stac-validator finds the JSON documents valid against local schema copies.

Schemas: ``tests/data/stac_schemas/`` (STAC 1.1.0 core + GeoJSON, copied from the pystac wheel;
see its README) and the draft-07 metaschema shipped by ``jsonschema-specifications``. Any
attempt to fetch over the network fails the test.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pytest
from click.testing import CliRunner
from shapely.geometry import box

from pipelines.cli import main
from s2xr.errors import InputError
from s2xr.store.index import INDEX_COLUMNS, merge_index
from s2xr.store.layout import DatasetLayout
from s2xr.store.stac import publish_stac, write_stac_geoparquet

SCHEMAS = Path(__file__).parent / "data" / "stac_schemas"
STACSPEC = "https://schemas.stacspec.org/v1.1.0"
URL = "https://data.example.org/ships"


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args[:1]}")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


def schema_map() -> dict[str, str]:
    import jsonschema_specifications

    meta = Path(jsonschema_specifications.__file__).parent / "schemas" / "draft7" / \
        "metaschema.json"
    out = {"http://json-schema.org/draft-07/schema": str(meta),
           "http://json-schema.org/draft-07/schema#": str(meta)}
    for f in (SCHEMAS / "v1.1.0").glob("*.json"):
        spec = {"catalog.json": "catalog", "collection.json": "collection"}.get(f.name, "item")
        out[f"{STACSPEC}/{spec}-spec/json-schema/{f.name}"] = str(f)
    for f in (SCHEMAS / "geojson").glob("*.json"):
        out[f"https://geojson.org/schema/{f.name}"] = str(f)
    return out


def stac_validate(path: Path) -> None:
    from stac_validator.validate import StacValidate

    v = StacValidate(str(path), core=True, schema_map=schema_map())
    assert v.run(), (path, v.message)
    assert v.message[-1]["valid_stac"] and v.message[-1]["schema"], v.message


def make_dataset(root: Path) -> gpd.GeoDataFrame:
    """An index of 4 chips on two tiles (3 passed) and their files (placeholder bytes)."""
    rows = []
    for i, (tile, lon, passed) in enumerate([("30STE", -5.4, True), ("30STE", -5.3, True),
                                             ("30STF", -5.2, True), ("30STE", -5.1, False)]):
        chip_id = f"chip{i}"
        rel = f"chips/train/{224000000 + i}/20240501/{chip_id}"
        for suffix in (".tif", ".jpg", ".json"):
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / (rel + suffix)).write_bytes(b"x")
        rows.append({c: None for c in INDEX_COLUMNS} | {
            "chip_id": chip_id, "path": rel + ".tif", "mmsi": 224000000 + i, "lat": 36.0,
            "lon": lon, "scene_id": "S2A_30STE_20240501_0_L2A",
            "scene_datetime": pd.Timestamp("2024-05-01T11:00Z") + pd.Timedelta(minutes=i),
            "ais_time": pd.Timestamp("2024-05-01T10:59Z"), "dt_seconds": 60.0,
            "split": "train", "bands": "blue,green,red,nir", "qa_cloud_frac": 0.0,
            "qa_water_frac": 0.9, "qa_land_frac": 0.1, "qa_pass": passed, "epsg": 32630,
            "tile_id": tile, "ship_type": 70, "length": 120.0, "beam": 20.0,
            "geometry": box(lon - 0.01, 35.99, lon + 0.01, 36.01)})
    gdf = gpd.GeoDataFrame(pd.DataFrame(rows), geometry="geometry", crs="EPSG:4326")
    return merge_index(root, gdf)


def documents(catalog: Path) -> list[dict]:
    return [json.loads(f.read_text()) for f in sorted(catalog.parent.rglob("*.json"))]


def geoparquet_items(path: Path) -> list[dict]:
    import rustac

    async def read() -> dict:
        return await rustac.read(str(path))

    return asyncio.run(read())["features"]


def hrefs(doc: dict) -> list[str]:
    return [x["href"] for x in doc.get("links", []) + list(doc.get("assets", {}).values())]


def test_default_output_moves_with_the_dataset(tmp_path):
    root = tmp_path / "ds"
    make_dataset(root)
    cat = publish_stac(root)
    gpq = write_stac_geoparquet(root)
    moved = tmp_path / "elsewhere" / "copy"
    shutil.copytree(root, moved)
    shutil.rmtree(root)  # nothing may point back at the old place
    cat, gpq = moved / cat.relative_to(root), moved / gpq.relative_to(root)
    docs = documents(cat)
    assert {d["type"] for d in docs} == {"Catalog", "Collection", "Feature"}
    for f, d in zip(sorted(cat.parent.rglob("*.json")), docs, strict=True):
        for h in hrefs(d):
            assert not h.startswith(("/", "file:", "http")), (f, h)
            assert (f.parent / h).resolve().is_file(), (f, h)
        if d["type"] == "Feature":
            tile = "30STF" if d["id"] == "chip2" else "30STE"
            assert d["collection"] == f"s2xr-chips-{tile}"
        stac_validate(f)
    items = geoparquet_items(gpq)
    assert sorted(i["id"] for i in items) == ["chip0", "chip1", "chip2"]  # passed chips only
    for item in items:
        assert item["collection"] == ("s2xr-chips-30STF" if item["id"] == "chip2" else
                                      "s2xr-chips-30STE")
        assert {x["rel"] for x in item["links"]} == {"collection", "root"}
        for h in hrefs(item):
            assert not h.startswith(("/", "file:", "http")), h
            assert (gpq.parent / h).resolve().is_file(), h  # relative to the parquet file
        col = next(x["href"] for x in item["links"] if x["rel"] == "collection")
        assert json.loads((gpq.parent / col).read_text())["id"] == item["collection"]


def test_absolute_with_base_url_rewrites_every_href(tmp_path):
    root = tmp_path / "ds"
    make_dataset(root)
    res = CliRunner().invoke(main, ["publish-stac", "--out", str(root), "--absolute",
                                    "--base-url", URL + "/"])
    assert res.exit_code == 0, res.output
    layout = DatasetLayout(root)
    docs = documents(layout.stac_catalog)
    assert docs
    for d in docs:
        for h in hrefs(d):
            assert h.startswith(URL + "/") and "//" not in h[len("https://"):], h
            assert str(tmp_path) not in h
        if d["type"] == "Feature":
            mmsi = 224000000 + int(d["id"][4:])
            assert d["assets"]["data"]["href"] == (
                f"{URL}/chips/train/{mmsi}/20240501/{d['id']}.tif")
    self_links = {x["href"] for d in docs for x in d["links"] if x["rel"] == "self"}
    assert f"{URL}/stac/catalog.json" in self_links
    for f in sorted(layout.stac.rglob("*.json")):
        stac_validate(f)
    items = geoparquet_items(layout.stac_geoparquet)
    assert len(items) == 3
    for item in items:
        assert all(h.startswith(URL + "/") for h in hrefs(item)), hrefs(item)
        assert {x["href"] for x in item["links"]} == {
            f"{URL}/stac/catalog.json", f"{URL}/stac/{item['collection']}/collection.json"}
    assert str(tmp_path) not in layout.stac_geoparquet.read_bytes().decode("latin-1")


def test_absolute_local_paths(tmp_path):
    root = tmp_path / "ds"
    make_dataset(root)
    cat = publish_stac(root, absolute=True)
    gpq = write_stac_geoparquet(root, absolute=True)
    for d in documents(cat):
        for h in hrefs(d):
            assert h.startswith(str(root.resolve())) and Path(h).is_file(), h
    for item in geoparquet_items(gpq):
        for h in hrefs(item):
            assert h.startswith(str(root.resolve())), h


def test_base_url_needs_absolute_and_a_catalog_under_the_root(tmp_path):
    root = tmp_path / "ds"
    make_dataset(root)
    with pytest.raises(InputError, match="--absolute"):
        publish_stac(root, base_url=URL)
    with pytest.raises(InputError, match="under the dataset root"):
        publish_stac(root, out=tmp_path / "cat", absolute=True, base_url=URL)
