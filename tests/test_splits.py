"""Splits: every strategy is deterministic; mmsi/scene/tile keep their key in one split; the
leakage report (also in the QA report) shows zero for the chosen strategy and non-zero for the
predecessor's per-chip split on the same chips."""

from __future__ import annotations

import pandas as pd
import pytest

from pipelines.chip_job import run_chip_job
from s2xr.config import SplitConfig, build_config
from s2xr.report import write_qa_report
from s2xr.splits import assign_splits, leakage_report
from s2xr.store import read_index


@pytest.fixture(scope="module")
def index(world, stac_server, tmp_path_factory):
    """The passed chips of a chip job on the world (default split strategy: mmsi)."""
    root = tmp_path_factory.mktemp("splits")
    cfg = build_config({"stac": {"api_url": stac_server.url, "collection": "sentinel-2-l2a",
                                 "window_hours": 6},
                        "storage": {"root": str(root), "write_geotiff": False,
                                    "write_quicklook": False, "write_zarr": False}},
                       environ={}, dotenv_path=None)
    assert cfg.splits.strategy == "mmsi"
    run_chip_job(cfg, world.ais_path)
    idx = read_index(root)
    return root, idx.loc[idx.qa_pass].reset_index(drop=True)


def resplit(idx: pd.DataFrame, strategy: str) -> pd.DataFrame:
    return idx.assign(split=assign_splits(idx, SplitConfig(strategy=strategy)).to_numpy())


def splits_per(idx: pd.DataFrame, col: str) -> pd.Series:
    return idx.groupby(col)["split"].nunique()


def test_job_default_keeps_each_vessel_in_one_split(index):
    _, idx = index
    assert idx.mmsi.value_counts().max() > 1  # vessels with several chips ...
    assert (splits_per(idx, "mmsi") == 1).all()  # ... all in one split
    assert idx.split.nunique() > 1
    assert leakage_report(idx).loc["vessels", "n_shared"] == 0


@pytest.mark.parametrize(("strategy", "kind", "col"), [
    ("mmsi", "vessels", "mmsi"), ("scene", "scenes", "scene_id"), ("tile", "tiles", "tile_id")])
def test_grouped_strategies_do_not_leak_their_key(index, strategy, kind, col):
    _, idx = index
    split = resplit(idx, strategy)
    assert (splits_per(split, col) == 1).all()
    rep = leakage_report(split)
    assert rep.loc[kind, "n_shared"] == 0 and rep.loc[kind, "n_chips_shared"] == 0
    if strategy == "tile":  # a tile holds whole scenes and, here, whole tracks
        assert rep["n_shared"].sum() == 0


def test_per_chip_split_leaks_vessels_on_the_same_data(index):
    _, idx = index
    rep = leakage_report(resplit(idx, "chip"))
    shared = splits_per(resplit(idx, "chip"), "mmsi")
    assert rep.loc["vessels", "n_shared"] == int((shared > 1).sum()) > 0
    assert rep.loc["vessels", "n_chips_shared"] > 0
    assert rep.loc["scenes", "n_shared"] > 0


def test_splits_are_deterministic_per_key(index):
    _, idx = index
    for strategy in ("chip", "mmsi", "scene", "tile"):
        a = assign_splits(idx, SplitConfig(strategy=strategy))
        shuffled = idx.sample(frac=1.0, random_state=1)
        b = assign_splits(shuffled, SplitConfig(strategy=strategy)).reindex(a.index)
        assert (a == b).all()
        half = idx.iloc[::2]  # a key's split does not depend on the other rows
        assert (assign_splits(half, SplitConfig(strategy=strategy)) == a.iloc[::2]).all()
    other = assign_splits(idx, SplitConfig(strategy="chip", salt="other"))
    assert (other != assign_splits(idx, SplitConfig(strategy="chip"))).any()


def test_leakage_report_counts_shared_keys():
    idx = pd.DataFrame({"mmsi": [1, 1, 2, 3, 3, 3], "scene_id": list("aabbcc"),
                        "tile_id": "30STE",
                        "split": ["train", "val", "train", "train", "test", "val"]})
    rep = leakage_report(idx)
    per = idx.groupby("mmsi")["split"].nunique()
    assert rep.loc["vessels", "n_shared"] == int((per > 1).sum())
    assert rep.loc["vessels", "n_chips_shared"] == int(idx.mmsi.isin(per.index[per > 1]).sum())
    assert rep.loc["vessels", "train/val"] == 2 and rep.loc["vessels", "val/test"] == 1
    assert rep.loc["tiles", "n_shared"] == 1 and rep.loc["tiles", "frac_chips_shared"] == 1.0
    assert list(rep.columns[-3:]) == ["train/val", "train/test", "val/test"]


def test_qa_report_shows_the_leakage_table(index):
    root, idx = index
    page = write_qa_report(root).read_text()
    assert "Split leakage" in page
    rep = leakage_report(idx)
    table = page.split("Split leakage", 1)[1]
    for kind in rep.index:
        assert kind in table
