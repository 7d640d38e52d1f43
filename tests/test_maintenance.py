"""doctor, vacuum, publish (manifest) and logging configuration."""

from __future__ import annotations

import json
import logging
import socket

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from pipelines.chip_job import run_chip_job
from pipelines.cli import main
from s2xr.ais import read_ais_table
from s2xr.ais.replay import ReplayServerThread
from s2xr.config import build_config
from s2xr.ops import connect
from s2xr.store import open_chips, read_index
from s2xr.store.layout import DatasetLayout

KEY = "doctor-test-key-5f3a91"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def small_run(world, stac_server, tmp_path_factory):
    """A chip job over a handful of the world's ships (fast)."""
    root = tmp_path_factory.mktemp("small")
    pts = read_ais_table(world.ais_path).points
    few = set(pts["mmsi"].drop_duplicates().head(8))
    cfg = build_config({"stac": {"api_url": stac_server.url, "collection": "sentinel-2-l2a",
                                 "window_hours": 6}, "storage": {"root": str(root)}},
                       environ={}, dotenv_path=None)
    res = run_chip_job(cfg, world.ais_path, only_mmsi=few)
    assert res.n_passed > 0
    return root, cfg


def _write_cfg(tmp_path, **sections):
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(sections))
    return str(p)


def test_doctor_passes_against_reachable_endpoints(stac_server, tmp_path, monkeypatch):
    monkeypatch.setenv("AISSTREAM_API_KEY", KEY)
    with ReplayServerThread([], valid_keys={KEY}) as ais:
        cfg = _write_cfg(tmp_path, stac={"api_url": stac_server.url,
                                         "collection": "sentinel-2-l2a"},
                         ais={"url": ais.url}, storage={"root": str(tmp_path / "ds")})
        res = CliRunner().invoke(main, ["doctor", "--config", cfg])
    assert res.exit_code == 0, res.output
    assert "all checks passed" in res.output
    for name in ("storage", "ops db", "stac", "ais", "package stackstac", "gdal"):
        assert f"ok   {name}" in res.output, name
    assert "item search available" in res.output
    assert KEY not in res.output


def test_doctor_fails_and_names_each_broken_check(tmp_path, monkeypatch):
    monkeypatch.delenv("AISSTREAM_API_KEY", raising=False)
    monkeypatch.chdir(tmp_path)  # no .env
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    dead = _free_port()
    cfg = _write_cfg(tmp_path, stac={"api_url": f"http://127.0.0.1:{dead}"},
                     ais={"url": f"ws://127.0.0.1:{dead}/v0/stream"},
                     storage={"root": str(blocker / "ds")})
    res = CliRunner().invoke(main, ["doctor", "--config", cfg])
    assert res.exit_code == 1
    assert "FAIL storage" in res.output and "FAIL stac" in res.output
    assert "FAIL ais" in res.output and "unreachable" in res.output
    assert "3 check(s) failed: storage, stac, ais" in res.output
    # offline: only the local checks, the storage one still fails
    res = CliRunner().invoke(main, ["doctor", "--config", cfg, "--offline"])
    assert res.exit_code == 1 and "stac" not in res.output.split("failed:")[-1]


def test_doctor_reports_missing_collection(stac_server, tmp_path):
    cfg = _write_cfg(tmp_path, stac={"api_url": stac_server.url, "collection": "nope"},
                     storage={"root": str(tmp_path / "ds")})
    res = CliRunner().invoke(main, ["doctor", "--config", cfg, "--skip", "ais"])
    assert res.exit_code == 1 and "collection 'nope' not found" in res.output


def test_vacuum_repairs_and_compacts(small_run, tmp_path):
    import shutil

    src, _ = small_run
    root = tmp_path / "copy"
    shutil.copytree(src, root)
    cfg = _write_cfg(tmp_path, storage={"root": str(root)})
    idx = read_index(root)
    passed = set(idx.loc[idx.qa_pass, "chip_id"])
    some = next((root / "chips").rglob("*.tif"))
    orphan = some.with_name("0123456789abcdef.tif")
    orphan.write_bytes(b"junk")
    temp = some.with_name(".half-written.tif.tmp")
    temp.write_bytes(b"junk")
    empty = root / "chips" / "train" / "999999999" / "20200101"
    empty.mkdir(parents=True)
    with connect(DatasetLayout.of(build_config({"storage": {"root": str(root)}}, environ={},
                                      dotenv_path=None)).ops_db) as c, c:
        c.execute("CREATE TABLE scratch (x BLOB)")
        c.executemany("INSERT INTO scratch VALUES (?)", [(b"x" * 4096,)] * 500)
        c.execute("DROP TABLE scratch")
    res = CliRunner().invoke(main, ["vacuum", "--config", cfg, "--rm-empty"])
    assert res.exit_code == 0, res.output
    assert not orphan.exists() and not temp.exists() and not empty.exists()
    assert not (root / "chips" / "train" / "999999999").exists()
    assert "1 orphan file(s), 1 temp file(s)" in res.output
    before, after = (int(x.replace(",", "")) for x in
                     res.output.split("ops DB ")[1].split(" bytes")[0].split(" → "))
    assert after < before
    assert {p.stem for p in (root / "chips").rglob("*.tif")} == passed
    assert set(open_chips(root / "chips.zarr").chip_id.values) == passed


def test_vacuum_empties_pruned_areas_after_their_retention(small_run, tmp_path):
    """What `s2xr prune` moved to pruned/YYYYMMDDTHHMMSS/ stays there (for --undo) until
    ops.pruned_retention_days have passed, or `vacuum --purge-pruned`; areas a prune left
    half written go on the next vacuum; anything else under pruned/ is left alone."""
    import shutil

    src, _ = small_run
    root = tmp_path / "copy"
    shutil.copytree(src, root)
    cfg = _write_cfg(tmp_path, storage={"root": str(root)})
    idx = read_index(root)
    passed = set(idx.loc[idx.qa_pass, "chip_id"])
    one = int(idx.loc[idx.qa_pass, "mmsi"].iloc[0])
    obs = pd.read_parquet(DatasetLayout(root).ais_observations)
    res = CliRunner().invoke(main, ["prune", "--config", cfg, "--force", "--ais",
                                    str(_csv(tmp_path, obs.loc[obs.mmsi != one]))])
    assert res.exit_code == 0, res.output
    pruned = root / "pruned"
    (recent,) = list(pruned.iterdir())
    old = pruned / "20200101T000000"
    shutil.copytree(recent, old)
    half = pruned / "20250101T000000.partial"
    half.mkdir()
    (half / "index_rows.parquet").write_bytes(b"x")
    notes = pruned / "notes"
    notes.mkdir()
    res = CliRunner().invoke(main, ["vacuum", "--config", cfg])
    assert res.exit_code == 0, res.output
    assert "2 pruned area(s)" in res.output
    assert not old.exists() and not half.exists() and recent.is_dir() and notes.is_dir()
    assert (recent / "prune.json").is_file()  # kept for `s2xr prune --undo`
    remaining = set(read_index(root).chip_id)
    assert set(open_chips(root / "chips.zarr").chip_id.values) == passed & remaining
    res = CliRunner().invoke(main, ["vacuum", "--config", cfg, "--purge-pruned"])
    assert res.exit_code == 0, res.output
    assert "1 pruned area(s)" in res.output
    assert not recent.exists() and notes.is_dir()
    assert set(open_chips(root / "chips.zarr").chip_id.values) == passed & remaining
    # a retention of 0 days empties an area on the next vacuum
    from s2xr.ops.maintenance import expire_pruned

    (pruned / "20260101T000000").mkdir()
    assert expire_pruned(root, retention_days=0) == 1


def _csv(tmp_path, df):
    path = tmp_path / "obs.csv"
    df.to_csv(path, index=False)
    return path


def test_publish_writes_a_manifest_that_matches_the_index(small_run, tmp_path):
    root, _ = small_run
    cfg = _write_cfg(tmp_path, storage={"root": str(root)})
    res = CliRunner().invoke(main, ["publish", "--config", cfg, "--samples", "3"])
    assert res.exit_code == 0, res.output
    m = json.loads((root / "manifest.json").read_text())
    idx = read_index(root)
    passed = idx.loc[idx.qa_pass]
    assert m["counts"]["chips_cut"] == len(idx)
    assert m["counts"]["chips_passed"] == len(passed)
    assert m["counts"]["ships"] == passed.mmsi.nunique()
    assert sum(m["counts"]["by_split"].values()) == len(passed)
    assert sum(m["counts"]["rejected_by_reason"].values()) == len(idx) - len(passed)
    assert len(m["samples"]) == 3
    for s in m["samples"]:
        assert (root / s["path"]).is_file()
    lo, hi = (pd.Timestamp(t) for t in m["time_range_utc"])
    assert lo <= pd.to_datetime(passed.scene_datetime, utc=True).min() <= hi
    assert m["providers"] == ["synthetic"]
    assert not list(root.glob(".manifest.json*.tmp"))


def test_logging_rotating_json_lines_without_duplicate_handlers(tmp_path):
    log_file = tmp_path / "logs" / "s2xr.log"
    root_logger = logging.getLogger()
    try:
        for _ in range(2):
            res = CliRunner().invoke(main, ["--log-file", str(log_file), "--log-json",
                                            "doctor", "--offline", "--config",
                                            _write_cfg(tmp_path, storage={
                                                "root": str(tmp_path / "ds")})])
            assert res.exit_code == 0, res.output
        ours = [h for h in root_logger.handlers if getattr(h, "_s2xr", False)]
        assert len(ours) == 2  # stderr + the rotating file, once each
        lines = log_file.read_text().splitlines()
        recs = [json.loads(ln) for ln in lines]
        assert {"time", "level", "logger", "message"} <= set(recs[0])
        assert any(r["logger"] == "s2xr.ops.doctor" for r in recs)
        assert recs[0]["time"].endswith("Z")
    finally:
        for h in list(root_logger.handlers):
            if getattr(h, "_s2xr", False):
                root_logger.removeHandler(h)
                h.close()
