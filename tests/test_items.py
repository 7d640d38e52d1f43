import copy

import pandas as pd
import pytest

from s2xr.errors import SceneError
from s2xr.scenes import dedupe_items, items_table, normalize_item, reflectance_params
from s2xr.scenes.items import item_tile


def test_item_tile_from_real_items(real_items):
    assert item_tile(real_items["S2A_39QTA_20230628_0_L2A"]) == "39QTA"
    assert item_tile(real_items["S2B_T01WCR_20250427T000611_L2A"]) == "01WCR"
    assert item_tile(real_items["S2B_T38XNF_20250422T091553_L2A"]) == "38XNF"


def test_proj_code_is_restored_to_epsg(real_items):
    it = copy.deepcopy(real_items["S2A_39QTA_20230628_0_L2A"])
    del it["properties"]["proj:epsg"]
    it["properties"]["proj:code"] = "EPSG:32639"
    for a in it["assets"].values():
        a.pop("proj:epsg", None)
        a["proj:code"] = "EPSG:32639"
    norm = normalize_item(it)
    assert norm["properties"]["proj:epsg"] == 32639
    assert norm["assets"]["blue"]["proj:epsg"] == 32639
    assert "proj:epsg" not in it["properties"]  # input untouched
    del it["properties"]["proj:code"]
    for a in it["assets"].values():
        a.pop("proj:code")
    with pytest.raises(SceneError, match="no proj:epsg"):
        normalize_item(it)


def test_reflectance_offset_rule(real_items):
    it = real_items["S2A_39QTA_20230628_0_L2A"]
    assert reflectance_params(it, "blue") == (0.0001, -0.1)  # baseline 05.09
    c1 = real_items["S2B_T38XNF_20250422T091553_L2A"]  # 05.11, no boa flag
    assert reflectance_params(c1, "red") == (0.0001, -0.1)
    old = copy.deepcopy(it)
    old["properties"]["s2:processing_baseline"] = "03.01"
    old["properties"]["earthsearch:boa_offset_applied"] = False
    assert reflectance_params(old, "blue") == (0.0001, 0.0)


def test_items_table_grid_and_missing_band(real_items):
    df = items_table([real_items["S2A_39QTA_20230628_0_L2A"]], bands=("blue", "swir16", "scl"))
    row = df.iloc[0]
    assert (row.x0, row.y0, row.res, row.height, row.width) == (199980, 2100000, 10, 10980,
                                                                10980)
    assert row.epsg == 32639 and row.tile_id == "39QTA"
    assert row.datetime == pd.Timestamp("2023-06-28T07:24:41.632Z")
    broken = copy.deepcopy(real_items["S2A_39QTA_20230628_0_L2A"])
    del broken["assets"]["swir16"]
    with pytest.raises(SceneError, match=r"missing band asset\(s\) \['swir16'\]"):
        items_table([broken], bands=("blue", "swir16"))


def test_dedupe_keeps_newest_baseline(real_items):
    a = real_items["S2A_39QTA_20230628_0_L2A"]
    b = copy.deepcopy(a)
    b["id"] = "S2A_39QTA_20230628_1_L2A"
    b["properties"]["s2:processing_baseline"] = "05.10"
    other_tile = real_items["S2A_39QUA_20230628_0_L2A"]
    kept = dedupe_items([a, b, other_tile, a])
    assert sorted(i["id"] for i in kept) == ["S2A_39QTA_20230628_1_L2A",
                                              "S2A_39QUA_20230628_0_L2A"]
