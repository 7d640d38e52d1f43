"""``s2xr prune`` cannot destroy a dataset by accident: it reads every AIS time column s2xr
reads elsewhere (the predecessor's upload format has only ``overpass_time``, its snapshots
``captured_time``), refuses to remove more than ``ops.prune_max_share`` of the chips without
``--force``, and moves what it removes to ``pruned/YYYYMMDDTHHMMSS/``, from where
``s2xr prune --undo`` puts it back."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from pipelines.chip_job import run_chip_job
from pipelines.cli import main
from s2xr.ais import read_ais_table
from s2xr.ais.fixtime import fix_times
from s2xr.config import build_config
from s2xr.errors import InputError
from s2xr.ops.prune import PRUNED_DIR, find_prunable, prune_chips, unprune
from s2xr.store import open_chips, read_index
from s2xr.store.consistency import reconcile

DATA = Path(__file__).parent / "data" / "predecessor"
N_SHIPS = 6


def columns_of(name: str) -> list[str]:
    return pd.read_csv(DATA / name, nrows=0).columns.tolist()


def assert_consistent(root: Path) -> set[str]:
    """Index (passed) == cube == files on disk; no temp files. Returns the passed chip ids."""
    idx = read_index(root)
    passed = set(idx.loc[idx.qa_pass, "chip_id"])
    raw = root / "chips.zarr"  # every chip stored, committed or not
    cube = set(open_chips(raw).chip_id.values) if raw.exists() else set()
    assert cube == passed
    assert {p.stem for p in (root / "chips").rglob("*.tif")} == passed
    assert not list(root.rglob("*.tmp")) and idx.chip_id.is_unique
    return passed


def files_of(root: Path, ids: set[str]) -> dict[str, str]:
    """sha256 of every file under ``chips/`` whose stem is one of ``ids``, by relative path."""
    return {str(p.relative_to(root / "chips")): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in (root / "chips").rglob("*") if p.is_file() and p.stem in ids}


@pytest.fixture(scope="module")
def predecessor_files(world, tmp_path_factory):
    """The world's ships at one overpass, in the predecessor's two AIS formats: the upload
    (``mmsi,lat,lon,overpass_time``) and its snapshot rows (``captured_time`` is the fix's
    time, ``overpass_time`` the predicted overpass, a few seconds off)."""
    out = tmp_path_factory.mktemp("predecessor")
    truth = world.truth()
    item = truth["item_id"].iloc[0]
    ships = truth.loc[(truth.item_id == item) & (truth.placement == "water") &
                      ~truth.under_cloud.astype(bool)].head(N_SHIPS)
    assert len(ships) == N_SHIPS
    sensing = pd.to_datetime(ships["sensing_time"], utc=True)
    iso = sensing.map(lambda t: t.isoformat().replace("+00:00", "Z"))
    upload = pd.DataFrame({"mmsi": ships["mmsi"], "lat": ships["lat"], "lon": ships["lon"],
                           "overpass_time": iso})
    assert list(upload.columns) == columns_of("upload_example.csv")
    upload_path = out / "upload.csv"
    upload.to_csv(upload_path, index=False)
    snap = pd.DataFrame({
        "id": ships["mmsi"].astype(str) + "|" + iso + "|" + str(world.tile),
        "mmsi": ships["mmsi"], "lat": ships["lat"], "lon": ships["lon"],
        "tile_id": str(world.tile), "captured_time": iso,
        "overpass_time": sensing.dt.floor("min").map(lambda t: t.isoformat()),
        "source": "opportunistic", "provider": "aisstream", "status": "captured",
        "created_at": iso})
    assert list(snap.columns) == columns_of("ais_observations_rows.csv")
    snap_path = out / "snapshot.csv"
    snap.to_csv(snap_path, index=False)
    return upload_path, snap_path


def chip_config(root: Path, url: str, **ops):
    return build_config({"stac": {"api_url": url, "collection": "sentinel-2-l2a",
                                  "window_hours": 6}, "storage": {"root": str(root)},
                         "ops": ops}, environ={}, dotenv_path=None)


@pytest.fixture(scope="module")
def upload_dataset(predecessor_files, stac_server, tmp_path_factory):
    """A dataset chipped from the predecessor's upload file (as a migrating user would)."""
    root = tmp_path_factory.mktemp("upload-dataset")
    res = run_chip_job(chip_config(root, stac_server.url), predecessor_files[0])
    assert len(read_index(root)) == N_SHIPS and res.n_passed >= 2, res  # some are cloudy
    return root


@pytest.fixture
def dataset(upload_dataset, tmp_path) -> Path:
    root = tmp_path / "ds"
    shutil.copytree(upload_dataset, root)
    return root


def prune_cli(root: Path, *args: str, config: Path | None = None, quiet: bool = False):
    cfg = ["--config", str(config)] if config else []
    return CliRunner().invoke(main, [*(["-q"] if quiet else []), "prune", *cfg, "--out",
                                     str(root), *args])


# ----------------------------------------------------------------------------- item 6: times
def test_fix_time_rule_reads_the_predecessor_formats():
    upload = read_ais_table(DATA / "upload_example.csv").points
    assert upload["time"].isna().all()  # the upload format has no time of its own
    fixed = fix_times(upload)
    assert (fixed["time"] == fixed["overpass_time"]).all() and fixed["time"].notna().all()
    snap = fix_times(read_ais_table(DATA / "ais_observations_rows.csv").points)
    raw = pd.read_csv(DATA / "ais_observations_rows.csv")
    want = pd.to_datetime(raw.set_index("mmsi")["captured_time"], utc=True)
    got = snap.set_index("mmsi")["time"]
    assert (got == want.loc[got.index]).all()  # the fix's own time, not the overpass
    assert not (got == snap.set_index("mmsi")["overpass_time"]).any()
    # a table without any time is an error, not "no AIS fix" for every chip
    idx = pd.DataFrame({"chip_id": ["0123456789abcdef"], "mmsi": [200000000],
                        "scene_datetime": [pd.Timestamp("2025-10-30T22:35Z")],
                        "lat": [36.2], "lon": [-5.3]})
    with pytest.raises(InputError, match="no fix time"):
        find_prunable(idx, raw.drop(columns=["captured_time", "overpass_time"]),
                      time_tol_min=10, dist_tol_m=500)


def test_prune_keeps_chips_of_an_upload_with_only_overpass_time(dataset, predecessor_files):
    before = assert_consistent(dataset)
    res = prune_cli(dataset, "--ais", str(predecessor_files[0]))
    assert res.exit_code == 0, res.output
    assert "removed 0 chip(s)" in res.output
    assert assert_consistent(dataset) == before and len(read_index(dataset)) == N_SHIPS


def test_prune_keeps_chips_of_a_snapshot_with_captured_time(predecessor_files, stac_server,
                                                            tmp_path):
    root = tmp_path / "snap"
    run_chip_job(chip_config(root, stac_server.url), predecessor_files[1])
    assert len(read_index(root)) == N_SHIPS
    before = assert_consistent(root)
    out = prune_cli(root, "--ais", str(predecessor_files[1]))
    assert out.exit_code == 0, out.output
    assert "removed 0 chip(s)" in out.output
    assert assert_consistent(root) == before and len(read_index(root)) == N_SHIPS


# ----------------------------------------------------------------------------- item 6: guard
def test_prune_refuses_more_than_the_share_without_force(dataset, predecessor_files,
                                                         tmp_path):
    before = assert_consistent(dataset)
    idx0 = read_index(dataset)
    upload = pd.read_csv(predecessor_files[0])
    few = tmp_path / "few.csv"
    upload.iloc[:3].to_csv(few, index=False)  # 3 of the 6 ships lost their AIS
    res = prune_cli(dataset, "--ais", str(few), quiet=True)
    assert res.exit_code == 2, res.output
    err = res.output.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    assert "3 of 6" in err and "50 %" in err and "20 %" in err
    assert "ops.prune_max_share" in err and "--force" in err
    assert assert_consistent(dataset) == before  # nothing removed
    pd.testing.assert_frame_equal(read_index(dataset), idx0)
    # the dry run still lists them, and says a prune would be refused
    dry = prune_cli(dataset, "--ais", str(few), "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "would remove 3 chip(s)" in dry.output and "--force" in dry.output
    assert sum(str(m) in dry.output for m in upload.mmsi.iloc[3:]) == 3
    assert not (dataset / PRUNED_DIR).exists()
    # a config allowing a larger share needs no --force
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"storage": {"root": str(dataset)},
                                   "ops": {"prune_max_share": 0.5}}))
    ok = prune_cli(dataset, "--ais", str(few), config=cfg)
    assert ok.exit_code == 0, ok.output
    assert "removed 3 chip(s)" in ok.output
    assert set(read_index(dataset).mmsi) == set(upload.mmsi.iloc[:3])
    assert assert_consistent(dataset) <= before


def test_force_prunes_and_the_library_guard_holds(dataset, predecessor_files):
    obs = read_ais_table(predecessor_files[0]).points.iloc[:1]
    before = assert_consistent(dataset)
    with pytest.raises(InputError, match="5 of 6"):
        prune_chips(dataset, obs, time_tol_min=10, dist_tol_m=500)
    assert assert_consistent(dataset) == before and len(read_index(dataset)) == N_SHIPS
    res = prune_cli(dataset, "--ais", str(predecessor_files[0]), "--force")
    assert res.exit_code == 0 and "removed 0 chip(s)" in res.output
    done = prune_chips(dataset, obs, time_tol_min=10, dist_tol_m=500, force=True)
    assert len(done.doomed) == 5 and len(read_index(dataset)) == 1
    assert assert_consistent(dataset) <= before


# ----------------------------------------------------------------------------- item 6: undo
def test_pruned_chips_move_to_a_dated_area_and_undo_restores_them(dataset,
                                                                   predecessor_files,
                                                                   tmp_path):
    idx0 = read_index(dataset)
    passed0 = assert_consistent(dataset)
    cube0 = open_chips(dataset).load()
    few = tmp_path / "few.csv"
    pd.read_csv(predecessor_files[0]).iloc[:2].to_csv(few, index=False)
    gone = set(idx0.loc[~idx0.mmsi.isin(pd.read_csv(few).mmsi), "chip_id"])
    assert gone & passed0 and gone - passed0  # passed chips (files, cube) and rejected ones
    gone_files = files_of(dataset, gone)
    assert {Path(p).suffix for p in gone_files} >= {".tif", ".json", ".geojson"}
    res = prune_cli(dataset, "--ais", str(few), "--force")
    assert res.exit_code == 0, res.output
    assert f"removed {len(gone)} chip(s)" in res.output
    assert assert_consistent(dataset) == passed0 - gone
    assert set(read_index(dataset).chip_id) == set(idx0.chip_id) - gone
    areas = list((dataset / PRUNED_DIR).iterdir())
    assert len(areas) == 1 and re.fullmatch(r"\d{8}T\d{6}", areas[0].name)
    area = areas[0]
    assert f"pruned/{area.name}" in res.output and "--undo" in res.output
    # the area holds everything needed to undo: files, index rows, cube rows, a manifest
    moved = {str(p.relative_to(area / "chips")): hashlib.sha256(p.read_bytes()).hexdigest()
             for p in (area / "chips").rglob("*") if p.is_file()}
    assert moved == gone_files
    rows = pd.read_parquet(area / "index_rows.parquet")
    assert set(rows.chip_id) == gone
    pd.testing.assert_frame_equal(
        rows.drop(columns="geometry").sort_values("chip_id").reset_index(drop=True),
        pd.DataFrame(idx0.loc[idx0.chip_id.isin(gone)]).drop(columns="geometry")
        .sort_values("chip_id").reset_index(drop=True), check_dtype=False)
    saved = open_chips(area / "chips.zarr").load()
    assert set(saved.chip_id.values) == gone & passed0
    for cid in gone & passed0:
        k0 = int(np.flatnonzero(cube0.chip_id.values == cid)[0])
        k1 = int(np.flatnonzero(saved.chip_id.values == cid)[0])
        np.testing.assert_array_equal(saved.reflectance[k1].values,
                                      cube0.reflectance[k0].values)
    manifest = json.loads((area / "prune.json").read_text())
    assert manifest["complete"] and set(manifest["chip_ids"]) == gone
    assert len(manifest["files"]) == len(gone_files)
    # a later reconcile (every run does one) leaves the area alone
    reconcile(dataset)
    assert {str(p.relative_to(area / "chips")) for p in (area / "chips").rglob("*")
            if p.is_file()} == set(gone_files)
    # undo: every store as before
    back = prune_cli(dataset, "--undo", f"{PRUNED_DIR}/{area.name}")
    assert back.exit_code == 0, back.output
    assert f"restored {len(gone)} chip(s)" in back.output
    assert assert_consistent(dataset) == passed0
    assert files_of(dataset, gone) == gone_files
    idx1 = read_index(dataset)
    assert set(idx1.chip_id) == set(idx0.chip_id)
    cube1 = open_chips(dataset).load()
    for cid in passed0:
        k0 = int(np.flatnonzero(cube0.chip_id.values == cid)[0])
        k1 = int(np.flatnonzero(cube1.chip_id.values == cid)[0])
        np.testing.assert_array_equal(cube1.reflectance[k1].values,
                                      cube0.reflectance[k0].values)
    assert not area.exists()
    daily = set()
    for f in (dataset / "indexes").glob("tiles_*.geojson"):
        daily |= {x["properties"]["chip_id"] for x in json.loads(f.read_text())["features"]}
    assert daily == set(idx0.chip_id)


def test_undo_refuses_an_unknown_or_incomplete_area(dataset, tmp_path):
    with pytest.raises(InputError, match="not a pruned area"):
        unprune(dataset, tmp_path / "nowhere")
    half = dataset / PRUNED_DIR / "20250101T000000.partial"
    half.mkdir(parents=True)
    res = prune_cli(dataset, "--undo", str(half))
    assert res.exit_code == 2 and "not a complete pruned area" in res.output
