"""Operations on a dataset: SIGKILL mid-batch then re-run, a lock against concurrent runs,
prune by AIS keeping every store consistent, and a STAC catalog valid offline."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
import yaml
from click.testing import CliRunner

from pipelines.chip_job import run_chip_job
from pipelines.cli import main
from s2xr.config import build_config
from s2xr.errors import StorageError
from s2xr.ops import JobStore
from s2xr.ops.prune import prune_chips
from s2xr.store import open_chips, read_index
from s2xr.store.consistency import dataset_lock
from s2xr.store.layout import DatasetLayout
from s2xr.store.stac import publish_stac, validate_stac


def config(root, url, **storage):
    return build_config({"stac": {"api_url": url, "collection": "sentinel-2-l2a",
                                  "window_hours": 6},
                         "storage": {"root": str(root), **storage}}, environ={},
                        dotenv_path=None)


def assert_consistent(root: Path) -> set[str]:
    """Index (passed) == cube == files on disk; no temp files. Returns the passed chip ids."""
    idx = read_index(root)
    passed = set(idx.loc[idx.qa_pass, "chip_id"])
    raw = root / "chips.zarr"  # every chip stored, committed or not
    cube = set(open_chips(raw).chip_id.values) if raw.exists() else set()
    files = {p.stem for p in (root / "chips").rglob("*.tif")}
    jsons = {p.stem for p in (root / "chips").rglob("*.json")}
    assert cube == passed and files == passed and jsons == passed
    assert not list(root.rglob("*.tmp"))
    assert idx.chip_id.is_unique
    return passed


@pytest.fixture(scope="module")
def reference_run(world, stac_server, tmp_path_factory):
    root = tmp_path_factory.mktemp("ref")
    res = run_chip_job(config(root, stac_server.url), world.ais_path)
    return root, res


@pytest.mark.slow
def test_sigkill_mid_batch_then_rerun(world, stac_server, reference_run, tmp_path):
    ref_root, _ = reference_run
    root = tmp_path / "killed"
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(yaml.safe_dump({
        "stac": {"api_url": stac_server.url, "collection": "sentinel-2-l2a",
                 "window_hours": 6},
        "storage": {"root": str(root), "block_size": 8}}))
    exe = Path(sys.executable).parent / "s2xr"
    proc = subprocess.Popen([str(exe), "-q", "chip", "--config", str(cfg_path), "--ais",
                             str(world.ais_path)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (root / "chips.zarr" / "zarr.json").exists():
        time.sleep(0.02)
    time.sleep(0.3)  # well inside the batch: some blocks written, more to come
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    res = run_chip_job(config(root, stac_server.url, block_size=8), world.ais_path)
    assert res.n_chips > 0  # the re-run finished what the killed one left
    passed = assert_consistent(root)
    assert passed == assert_consistent(ref_root)
    jobs = JobStore(DatasetLayout.of(config(root, stac_server.url)).ops_db).jobs()
    chip_jobs = jobs.loc[jobs.chip_id.notna()]
    assert set(chip_jobs.state) <= {"done", "rejected"}
    assert set(chip_jobs.loc[chip_jobs.state == "done", "chip_id"]) == passed
    # and the run the kill interrupted is recorded as such
    from s2xr.ops import connect

    with connect(DatasetLayout.of(config(root, stac_server.url)).ops_db) as c:
        statuses = [r[0] for r in c.execute("SELECT status FROM runs ORDER BY started_at")]
    assert statuses[0] == "interrupted" and statuses[-1] == "done"


def test_second_writer_is_refused(tmp_path):
    with dataset_lock(tmp_path), pytest.raises(StorageError, match="another s2xr run"), \
            dataset_lock(tmp_path):
        pass
    with dataset_lock(tmp_path):  # released: a later run gets it
        pass


def test_prune_by_ais_keeps_stores_consistent(world, stac_server, tmp_path):
    root = tmp_path / "p"
    run_chip_job(config(root, stac_server.url), world.ais_path)
    before = assert_consistent(root)
    idx = read_index(root)
    ais = pd.read_csv(world.ais_path)
    ais["time"] = pd.to_datetime(ais["time"], utc=True)
    victims = idx.loc[idx.qa_pass, "mmsi"].drop_duplicates().head(3).tolist()
    shifted = idx.loc[idx.qa_pass & ~idx.mmsi.isin(victims), "mmsi"].iloc[0]
    obs = ais.loc[~ais.mmsi.isin(victims)].copy()  # their AIS records are gone
    obs.loc[obs.mmsi == shifted, "lat"] += 0.01  # ~1.1 km off: beyond 500 m
    dry = prune_chips(root, obs, time_tol_min=10, dist_tol_m=500, dry_run=True).doomed
    assert assert_consistent(root) == before  # dry run touches nothing
    expected = set(idx.loc[idx.mmsi.isin([*victims, shifted]), "chip_id"])
    assert set(dry.chip_id) == expected
    assert dry.loc[dry.mmsi == shifted, "prune_reason"].str.contains("m from the chip").all()
    assert dry.loc[dry.mmsi.isin(victims), "prune_reason"].str.startswith("no AIS fix").all()
    prune_chips(root, obs, time_tol_min=10, dist_tol_m=500)
    after = assert_consistent(root)
    assert after == before - expected
    for f in (root / "indexes").glob("tiles_*.geojson"):
        ids = {x["properties"]["chip_id"] for x in json.loads(f.read_text())["features"]}
        assert not ids & expected
    # the cube kept the right pixels for the survivors
    cube = open_chips(root)
    row = read_index(root).query("qa_pass").iloc[0]
    k = int(np.flatnonzero(cube.chip_id.values == row.chip_id)[0])
    with rasterio.open(root / row.path) as src:
        np.testing.assert_array_equal(src.read(), cube.reflectance.isel(chip=k).values)


def test_publish_stac_valid_offline(world, stac_server, reference_run, tmp_path):
    root, _ = reference_run
    cat = publish_stac(root)
    assert validate_stac(cat) > 3
    doc = json.loads(cat.read_text())
    children = [link for link in doc["links"] if link["rel"] == "child"]
    assert len(children) == 1  # one collection per tile (the world has one tile)
    item_files = list(cat.parent.rglob("*/*/*.json"))
    item = json.loads(item_files[0].read_text())
    assert set(item["assets"]) == {"data", "thumbnail", "metadata"}
    href = item["assets"]["data"]["href"]
    assert not href.startswith("/")  # relative
    assert (item_files[0].parent / href).resolve().is_file()
    res = CliRunner().invoke(main, ["publish-stac", "--out", str(root)])
    assert res.exit_code == 0, res.output
    assert (root / "indexes" / "chips.stac.parquet").is_file()
    import geopandas as gpd

    gdf = gpd.read_parquet(root / "indexes" / "chips.stac.parquet")
    assert len(gdf) == read_index(root).qa_pass.sum()


def test_qa_report_and_alert(reference_run, tmp_path):
    import http.server
    import threading

    from s2xr.report import send_alert, summarize, write_qa_report

    root, res = reference_run
    html_path = write_qa_report(root)
    page = html_path.read_text()
    assert f"{res.n_passed} passed" in page and "data:image/png;base64" in page
    assert page.count("data:image/jpeg;base64") >= 10
    assert "<script" not in page
    received = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *a):
            pass

    srv = http.server.HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{srv.server_port}/hook"
    s = summarize(root)
    assert 0 < s.failure_rate < 1
    assert not send_alert(s, url, threshold=0.99) and received == []
    assert send_alert(s, url, threshold=0.01)
    assert received[0]["summary"]["n_chips"] == s.n_chips
    srv.shutdown()


def test_report_escapes_html(tmp_path):
    import geopandas as gpd
    from shapely.geometry import box

    from s2xr.report import write_qa_report
    from s2xr.store.index import INDEX_COLUMNS, index_path

    row = {c: None for c in INDEX_COLUMNS[:-1]}
    row.update(chip_id="0" * 16, mmsi=224000000, qa_pass=False, split="train",
               qa_reason="<script>alert(1)</script> 0.9>0.05", scene_datetime=pd.Timestamp(
                   "2026-01-01", tz="UTC"), qa_cloud_frac=0.9, qa_land_frac=0.0,
               qa_ndwi_water_frac=0.0, valid_frac=1.0, ship_name="<b>x</b>")
    gdf = gpd.GeoDataFrame([row], geometry=[box(0, 0, 1, 1)], crs="EPSG:4326")
    index_path(tmp_path).parent.mkdir(parents=True)
    gdf.to_parquet(index_path(tmp_path))
    page = write_qa_report(tmp_path).read_text()
    assert "<script>" not in page and "&lt;script&gt;" in page
