"""Datasets in an object store, against a real S3 API on 127.0.0.1 (moto_server, started and
stopped here): `s2xr chip` and `s2xr run` on the embedded world write into a bucket — chip
files and cube regions by the tasks that cut them, the index and the client's other files
pushed from the workspace, the index last — and the dataset reads back with
``open_chips("s3://…")``, geopandas and pystac; cluster workers writing into S3 give the
dataset a local threads run gives."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import dask
import geopandas as gpd
import numpy as np
import pandas as pd
import pystac
import pytest
import yaml
from click.testing import CliRunner

from pipelines.cli import main
from s2xr.config import StorageConfig
from s2xr.demo.s3_server import local_s3, s3_environ
from s2xr.store import open_chips, read_index
from s2xr.store.stac import FsspecStacIO

BUCKET = "s2xr-data"


@pytest.fixture(scope="module")
def s3():
    with local_s3() as s3, s3_environ(s3):
        s3.filesystem().mkdir(BUCKET)
        yield s3


def _config(tmp: Path, name: str, root: str, stac_url: str | None = None, **storage) -> Path:
    data = yaml.safe_load(Path("configs/demo.yaml").read_text())
    data["storage"] = {**data["storage"], "root": root, **storage}
    if stac_url is not None:
        data["stac"]["api_url"] = stac_url
    p = tmp / f"{name}.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def _store_files(s3, prefix: str) -> set[str]:
    fs = s3.filesystem()
    base = f"{BUCKET}/{prefix}/"
    return {f[len(base):] for f in fs.find(base)}


def _pixels(ds) -> dict[str, np.ndarray]:
    return {str(c): ds["reflectance"].values[k] for k, c in enumerate(ds["chip_id"].values)}


@pytest.mark.slow
def test_chip_into_s3_reads_back_and_reruns_from_an_empty_workspace(s3, world, stac_server,
                                                                     tmp_path):
    """`s2xr chip` into the bucket: index (geopandas), cube (open_chips) and chip objects
    agree; a re-run from an empty workspace (another machine) adds nothing. (That an S3
    dataset equals a local one, pixel for pixel, is the cluster test below.)"""
    url = f"s3://{BUCKET}/chip"
    cfg = _config(tmp_path, "s3", url, stac_server.url, workspace=str(tmp_path / "ws"))
    res = CliRunner().invoke(main, ["chip", "--config", str(cfg), "--ais",
                                    str(world.ais_path)])
    assert res.exit_code == 0, res.output
    idx = gpd.read_parquet(f"{url}/indexes/tiles.parquet")  # geopandas reads the store
    pd.testing.assert_frame_equal(idx, read_index(tmp_path / "ws"))  # = what was committed
    passed = set(idx.loc[idx["qa_pass"], "chip_id"])
    assert len(passed) >= 20
    files = _store_files(s3, "chip")
    cube = open_chips(url)
    assert set(cube["chip_id"].values.astype(object)) == passed
    assert {f.rsplit("/", 1)[1][:-4] for f in files if f.endswith(".tif")} == passed
    assert set(idx.loc[idx["qa_pass"], "path"]) <= files  # every index path is an object
    px = cube["reflectance"].isel(chip=0).values
    assert px.shape == (6, 256, 256) and np.isfinite(px).mean() > 0.5
    day = f"{pd.Timestamp(idx['scene_datetime'].iloc[0]):%Y%m%d}"
    with s3.filesystem().open(f"{BUCKET}/chip/indexes/tiles_{day}.geojson") as f:
        assert len(gpd.read_file(f)) == (idx["scene_datetime"].dt.strftime("%Y%m%d")
                                         == day).sum()
    # the ops DB and the lock stay in the workspace, never in the store
    assert not any(f.startswith(("ops.sqlite", ".s2xr")) for f in files)
    assert (tmp_path / "ws" / "ops.sqlite").is_file()

    # a re-run from a fresh workspace (another machine) finds everything in the store
    shutil.rmtree(tmp_path / "ws")
    again = CliRunner().invoke(main, ["chip", "--config", str(cfg), "--ais",
                                      str(world.ais_path)])
    assert again.exit_code == 0, again.output
    assert "no chip was cut" in again.output, again.output  # all already in the store
    idx2 = gpd.read_parquet(f"{url}/indexes/tiles.parquet")
    assert len(idx2) == len(idx) and set(idx2["chip_id"]) == set(idx["chip_id"])
    assert _store_files(s3, "chip") >= files


@pytest.mark.slow
def test_run_into_s3_publishes_stac_and_a_qa_report_there(s3, world, tmp_path):
    url = f"s3://{BUCKET}/run"
    ws = tmp_path / "ws"
    ws.mkdir()
    os.symlink(world.root, ws / "world")  # reuse the rendered world (same DemoConfig)
    cfg = _config(tmp_path, "run", url, workspace=str(ws))
    for args in (["run"], ["publish-stac"], ["qa-report"], ["publish"], ["dataset-card"],
                 ["export-labels", "--format", "coco"],
                 ["predict-overpasses", "--mode", "tle", "--tiles", "30STF", "--start",
                  "2026-09-25", "--days", "10"]):
        res = CliRunner().invoke(main, [*args, "--config", str(cfg)])
        assert res.exit_code == 0, (args, res.output)
    files = _store_files(s3, "run")
    passed = set(open_chips(url)["chip_id"].values.astype(object))
    assert len(passed) >= 20
    assert {"plan/overpass_schedule.csv", "indexes/ais_observations.parquet",
            "reports/qa_report.html", "manifest.json", "stac/catalog.json", "dataset.yaml",
            "DATASET.md"} <= files
    assert any(f.startswith("exports/coco/") and f.endswith(".json") for f in files)
    sched = pd.read_csv(s3.filesystem().open(f"{BUCKET}/run/plan/overpass_schedule.csv"))
    assert set(sched["tile_id"]) == {"30STF"}  # predict-overpasses pushed its schedule
    assert not any(f.startswith("world/") for f in files)  # the embedded world stays local
    # pystac reads the catalog from the store; every item's COG is an object there
    cat = pystac.Catalog.from_file(f"{url}/stac/catalog.json", stac_io=FsspecStacIO())
    items = list(cat.get_items(recursive=True))
    assert {it.id for it in items} == passed
    for it in items[:5]:
        href = it.assets["data"].get_absolute_href()
        assert href.startswith(url + "/chips/") and href[len(url) + 1:] in files
    report = s3.filesystem().cat(f"{BUCKET}/run/reports/qa_report.html").decode()
    assert url in report and report.count("data:image/jpeg;base64,") >= 1
    manifest = json.loads(s3.filesystem().cat(f"{BUCKET}/run/manifest.json"))
    assert manifest["counts"]["chips_passed"] == len(passed)


@pytest.mark.slow
def test_on_a_cluster_the_workers_write_into_s3(s3, tmp_path):
    """LocalCluster worker processes (the environment reaches them like any S3 client's)
    put the chip files and cube regions; the dataset equals a local threads run."""
    from distributed import Client, LocalCluster
    from test_worker_writes import GATE, ITEM_META, SPEC, STACK, make_plan

    from s2xr.chips import cut_chips
    from s2xr.gate import gate_chips
    from s2xr.store import write_chips

    ships = {224000100 + k: (10 + 9 * (k % 11), 10 + 85 * (k // 11), "train")
             for k in range(22)}

    def write(storage: StorageConfig):
        plan = make_plan(ships)
        gated = gate_chips(cut_chips(STACK, plan, SPEC), GATE)
        return write_chips(gated, plan, storage, GATE, item_meta=ITEM_META, block_size=4)

    with dask.config.set(scheduler="threads"):
        write(StorageConfig(root=tmp_path / "local"))
    url = f"s3://{BUCKET}/cluster"
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None, host="127.0.0.1") as cluster, \
            Client(cluster) as client:
        workers = set(client.run(os.getpid).values())
        summary = write(StorageConfig(root=url, workspace=tmp_path / "ws"))
    assert summary.writer_pids and summary.writer_pids <= workers
    got, want = _pixels(open_chips(url)), _pixels(open_chips(tmp_path / "local"))
    assert got.keys() == want.keys() and len(got) > 0
    for cid, px in want.items():
        np.testing.assert_array_equal(got[cid], px, err_msg=cid)
