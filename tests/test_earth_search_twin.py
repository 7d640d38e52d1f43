"""The Earth Search twin (s2xr.demo.earth_search): a STAC API on 127.0.0.1 that serves the real
Earth Search v1 items (sentinel-2-l2a and sentinel-2-c1-l2a) as the API returns them, with
stac-server's paging, over synthetic rasters on each item's real grid; and `s2xr chip` on the
real config (configs/earth-search.yaml, API URL pointed at the twin) chipping it right:
pixels = the twin's DN × 0.0001 + the offset of the item's processing baseline, on the grid
of proj:epsg or proj:code."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests
from click.testing import CliRunner

from pipelines.cli import main
from s2xr.config import StacConfig
from s2xr.demo.earth_search import (
    EARTH_SEARCH_URL,
    EarthSearchTwin,
    to_proj_code,
    twin_ais,
    twin_ships,
)
from s2xr.scenes.search import StacApiSource
from s2xr.store import open_chips, read_index
from tests.helpers.earth_search import PRE_04_DAY, expected_chip, twin_items

CONFIG = Path(__file__).resolve().parent.parent / "configs" / "earth-search.yaml"


@pytest.fixture(scope="module")
def twin(tmp_path_factory):
    with EarthSearchTwin(twin_items(), tmp_path_factory.mktemp("es-twin")) as es:
        yield es


def as_real(doc: dict, es: EarthSearchTwin) -> dict:
    """A served document with the twin's hosts put back to Earth Search's."""
    text = json.dumps(doc).replace(es.url, EARTH_SEARCH_URL)
    for host in ("sentinel-cogs.s3.us-west-2.amazonaws.com",
                 "e84-earth-search-sentinel-data.s3.us-west-2.amazonaws.com"):
        text = text.replace(f"{es.base_url}/{host}", f"https://{host}")
    return json.loads(text)


def test_items_are_served_as_earth_search_returns_them(twin):
    real = {it["id"]: it for it in twin.source}
    got = {}
    for coll in ("sentinel-2-l2a", "sentinel-2-c1-l2a"):
        page = requests.post(f"{twin.url}/search", json={"collections": [coll], "limit": 2},
                             timeout=30).json()
        n = page["numberMatched"]
        assert page["context"] == {"limit": 2, "matched": n, "returned": page["numberReturned"]}
        while True:
            for f in page["features"]:
                got[f["id"]] = f
            nxt = [ln for ln in page["links"] if ln["rel"] == "next"]
            if not page["features"]:
                assert not nxt
                break
            # stac-server: a POST next link carrying the whole body and a token, merge false
            assert nxt[0]["method"] == "POST" and nxt[0]["merge"] is False
            assert nxt[0]["body"]["collections"] == [coll] and nxt[0]["body"]["next"]
            page = requests.post(nxt[0]["href"], json=nxt[0]["body"], timeout=30).json()
    assert set(got) == set(real)
    for iid, item in got.items():  # byte for byte, hosts aside
        assert as_real(item, twin) == real[iid], iid
        blue = item["assets"]["blue"]["href"]
        assert blue.startswith(twin.base_url + "/") and blue.endswith("/B02.tif")
    l2a, c1 = got["S2A_39QTA_20230628_0_L2A"], got["S2B_T38XNF_20250422T091553_L2A"]
    assert l2a["properties"]["proj:epsg"] == 32639
    assert l2a["properties"]["earthsearch:boa_offset_applied"] is True
    assert "earthsearch:boa_offset_applied" not in c1["properties"]
    assert {"cloud", "snow", "preview"} <= set(c1["assets"]) and "blue-jp2" in l2a["assets"]
    assert "file:checksum" in c1["assets"]["blue"]


def test_search_filters_orders_and_pages_like_stac_server(twin):
    # newest first; GET paging by a next URL
    page = requests.get(f"{twin.url}/search", params={
        "collections": "sentinel-2-l2a", "bbox": "48.3,18.3,48.9,18.8", "limit": 1},
        timeout=30).json()
    ids = []
    while page["features"]:
        ids += [f["id"] for f in page["features"]]
        page = requests.get(next(ln["href"] for ln in page["links"] if ln["rel"] == "next"),
                            timeout=30).json()
    assert ids == ["S2A_39QTA_20230628_0_L2A", "S2B_39QTA_20230623_0_L2A",
                   f"S2B_39QTA_{PRE_04_DAY.replace('-', '')}_0_L2A"]
    one_day = requests.post(f"{twin.url}/search", timeout=30, json={
        "collections": ["sentinel-2-l2a"], "bbox": [48.3, 18.3, 48.9, 18.8],
        "datetime": "2023-06-28T00:00:00Z/2023-06-28T23:59:59Z"}).json()
    assert [f["id"] for f in one_day["features"]] == ["S2A_39QTA_20230628_0_L2A"]
    # the antimeridian item is found from either side of ±180°
    for bbox in ([-179.9, 67.6, -179.5, 68.0], [179.2, 67.6, 179.8, 68.0]):
        hit = requests.post(f"{twin.url}/search", timeout=30, json={
            "collections": ["sentinel-2-c1-l2a"], "bbox": bbox}).json()
        assert [f["id"] for f in hit["features"]] == ["S2B_T01WCR_20250427T000611_L2A"], bbox
    # what the twin does not implement is refused, not ignored
    r = requests.post(f"{twin.url}/search", timeout=30, json={
        "query": {"eo:cloud_cover": {"lt": 10}}})
    assert r.status_code == 400 and "query" in r.json()["description"]
    # s2xr's own client pages through it (page size 1: a request per item)
    before = len(twin.searches())
    src = StacApiSource(twin.url, StacConfig(api_url=twin.url, page_size=1))
    items = src.search(bbox=(48.3, 18.3, 48.9, 18.8), start=pd.Timestamp("2021-01-01", tz="UTC"),
                       end=pd.Timestamp("2024-01-01", tz="UTC"), collection="sentinel-2-l2a")
    assert len(items) == 3
    assert sum(1 for s in twin.searches()[before:] if s.get("next")) >= 2


def chip_with_config(es: EarthSearchTwin, tmp: Path, collection: str, ships_items: list,
                     env: dict) -> tuple[object, pd.DataFrame]:
    ships = twin_ships(ships_items)
    ais = tmp / "ais.csv"
    twin_ais(ships).to_csv(ais, index=False)
    res = CliRunner().invoke(main, ["chip", "--config", str(CONFIG), "--ais", str(ais),
                                    "--out", str(tmp / "ds")],
                             env={"S2XR_STAC__API_URL": es.url,
                                  "S2XR_STAC__COLLECTION": collection, **env})
    assert res.exit_code == 0, res.output
    return res, pd.DataFrame([s.__dict__ for s in ships])


@pytest.mark.slow
@pytest.mark.parametrize("case", ["c1", "c1-proj-code", "l2a"])
def test_chip_on_the_real_config_against_the_twin(tmp_path, case):
    items = twin_items()
    if case == "c1-proj-code":  # the projection extension v2 (STAC 1.1): proj:code only
        items = [to_proj_code(it) if it["collection"] == "sentinel-2-c1-l2a" else it
                 for it in items]
    collection = "sentinel-2-l2a" if case == "l2a" else "sentinel-2-c1-l2a"
    with EarthSearchTwin(items, tmp_path / "twin") as es:
        served = {it["id"]: it for it in es.items}
        mine = [it for it in es.items if it["collection"] == collection]
        res, ships = chip_with_config(es, tmp_path, collection, mine, {})
    idx = read_index(tmp_path / "ds")
    cube = open_chips(tmp_path / "ds").load()
    cloudy = {i for i, it in served.items() if it["collection"] == collection
              and it["properties"]["eo:cloud_cover"] > 60}  # stac.max_cloud in the config
    expect = {(r.mmsi, r.item_id) for r in ships.itertuples() if r.item_id not in cloudy}
    assert set(zip(idx.mmsi, idx.scene_id, strict=True)) == expect
    assert idx.qa_pass.all() and len(cube.chip) == len(expect) > 0
    if cloudy:  # 38XNF (91 % cloud) is dropped by the config's max_cloud: 60
        assert f"({len(cloudy)} cloud_cover, 0 duplicate dropped)" in res.output
        assert "[search] no Sentinel-2 item covers this ship" in res.output
    size = cube.sizes["x"]
    for k in range(len(cube.chip)):
        c = cube.isel(chip=k)
        item = served[str(c.item_id.values)]
        if case == "c1-proj-code":
            assert "proj:epsg" not in item["properties"]
            assert item["properties"]["proj:code"] == f"EPSG:{int(c.epsg)}"
        else:
            assert int(c.epsg) == item["properties"]["proj:epsg"]
        x_left, y_top = float(c.x_left), float(c.y_top)
        ship = ships.loc[ships.mmsi == int(c.mmsi)].iloc[0]  # centred on the ship
        assert abs(x_left + size * 5 - ship.x) <= 10 and abs(y_top - size * 5 - ship.y) <= 10
        for band in ("blue", "green", "red", "nir"):
            got = c.reflectance.sel(band=band).values
            np.testing.assert_allclose(got, expected_chip(item, band, x_left, y_top, size),
                                       atol=2e-6, err_msg=f"{c.item_id.values} {band}")
        assert (c.scl.values == 6).all()
    if case == "l2a":  # the pre-04.00 item: DN × 0.0001, no −0.1
        old = [k for k in range(len(cube.chip))
               if str(cube.item_id.values[k]).endswith(f"{PRE_04_DAY.replace('-', '')}_0_L2A")]
        assert old
        green = cube.reflectance.isel(chip=old[0]).sel(band="green").values
        assert green.min() > 0.1999 and green.max() < 0.24  # DN 2000–2399
