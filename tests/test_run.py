"""`s2xr run` on the embedded world: predict → collect (replay server) → chip, re-run adds
nothing; continuous mode stops gracefully and resumes; the L2A lag queues young windows."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from pipelines.chip_job import run_chip_job
from pipelines.cli import main
from pipelines.run_job import RunControl, RunOptions, run_batch
from s2xr.ais.schedule import read_schedule
from s2xr.config import build_config, load_config
from s2xr.ops import connect
from s2xr.ops.windows import WindowStore
from s2xr.store import open_chips, read_index
from s2xr.store.layout import DatasetLayout


def demo_cfg_file(tmp_path: Path, root: Path, **extra: dict) -> Path:
    data = yaml.safe_load(Path("configs/demo.yaml").read_text())
    data["storage"]["root"] = str(root)
    for k, v in extra.items():
        data.setdefault(k, {}).update(v)
    p = tmp_path / f"{root.name}.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def assert_stores_agree(root: Path) -> set[str]:
    idx = read_index(root)
    passed = set(idx.loc[idx.qa_pass, "chip_id"])
    assert set(open_chips(root / "chips.zarr").chip_id.values) == passed
    assert {p.stem for p in (root / "chips").rglob("*.tif")} == passed
    assert not list(root.rglob("*.tmp")) and idx.chip_id.is_unique
    return passed


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory, world):
    """`s2xr run --config configs/demo.yaml` (world shared with the session fixture)."""
    tmp = tmp_path_factory.mktemp("run")
    root = tmp / "ds"
    (root / "world").parent.mkdir(parents=True, exist_ok=True)
    os.symlink(world.root, root / "world")  # reuse the rendered world (same DemoConfig)
    cfg = demo_cfg_file(tmp, root)
    first = CliRunner().invoke(main, ["run", "--config", str(cfg)])
    second = CliRunner().invoke(main, ["run", "--config", str(cfg)])
    return root, cfg, first, second


@pytest.mark.slow
def test_run_demo_predicts_collects_and_chips(demo_run, world, stac_server, tmp_path):
    root, cfg_path, first, _second = demo_run
    assert first.exit_code == 0, first.output
    # predict: the schedule the collector reads, made by backfill at the tile's pass time
    sched = read_schedule(root / "plan" / "overpass_schedule.csv")
    assert set(sched.tile_id) == {"30STE"} and (sched.source == "backfill").all()
    sensing = pd.to_datetime(pd.Series([it["properties"]["datetime"]
                                        for it in world.items()]), utc=True)
    for t in sensing.unique():
        assert ((sched.start_time_utc <= t) & (t <= sched.end_time_utc)).any(), t
    # collect: through the replay server, labelled synthetic, in the dataset layout
    obs = pd.read_parquet(root / "indexes" / "ais_observations.parquet")
    assert len(obs) > 0 and set(obs.provider) == {"synthetic"}
    assert list(root.glob("ais/*/ais_overpass_30STE.parquet"))
    # chip: the same ships and scenes as a chip job straight from the world's AIS
    idx = read_index(root)
    passed = idx.loc[idx.qa_pass]
    assert len(passed) >= 20 and set(passed.provider) == {"synthetic"}
    ref_root = tmp_path / "ref"
    ref = run_chip_job(build_config({
        "stac": {"api_url": stac_server.url, "collection": "sentinel-2-l2a",
                 "window_hours": 6}, "storage": {"root": str(ref_root)}},
        environ={}, dotenv_path=None), world.ais_path)
    assert ref.n_passed > 0
    ref_idx = read_index(ref_root)
    ref_pairs = set(zip(ref_idx.loc[ref_idx.qa_pass, "mmsi"],
                        ref_idx.loc[ref_idx.qa_pass, "scene_id"], strict=True))
    assert set(zip(passed.mmsi, passed.scene_id, strict=True)) == ref_pairs
    assert_stores_agree(root)
    # summary table printed; windows chipped in the ops DB
    assert "windows chipped" in first.output and "passed the gate" in first.output
    cfg = load_config(cfg_path)
    states = WindowStore(DatasetLayout.of(cfg).ops_db).counts()
    assert states == {"chipped": len(sched)}


@pytest.mark.slow
def test_run_again_adds_nothing(demo_run):
    root, _, _first, second = demo_run
    assert second.exit_code == 0, second.output
    assert len(read_index(root)) == len(read_index(root).chip_id.unique())
    # nothing left to chip: every window is already chipped
    assert "windows chipped" in second.output
    line = next(ln for ln in second.output.splitlines() if "windows chipped" in ln)
    assert line.split()[-1] == "0"
    # and says why nothing is new, with what the dataset holds
    idx = read_index(root)
    n_pass = int(idx.qa_pass.sum())
    assert (f"0 new chip(s) passed: every window was chipped by an earlier run; the dataset "
            f"holds {n_pass} passed, {len(idx) - n_pass} rejected (") in second.output
    assert_stores_agree(root)


@pytest.mark.slow
def test_lag_queues_young_windows(world, tmp_path):
    """Just after the last scene, the windows that ended less than lag_days ago are queued
    (with their chip_after time) and not chipped; a run after the lag chips them."""
    root = tmp_path / "lagged"
    root.mkdir()
    os.symlink(world.root, root / "world")
    cfg = load_config(demo_cfg_file(tmp_path, root, ops={"lag_days": 2.0}))
    items = pd.to_datetime(pd.Series([it["properties"]["datetime"]
                                      for it in world.items()]), utc=True)
    last = items.max()
    early = last + pd.Timedelta(hours=1)
    res = run_batch(cfg, RunOptions(max_ships=5), now=early)
    assert res.n_windows_queued >= 1
    wins = WindowStore(DatasetLayout.of(cfg).ops_db).windows()
    queued = wins.loc[wins.state == "queued"]
    assert len(queued) == res.n_windows_queued
    assert (queued.chip_after == queued.end_time + pd.Timedelta(days=2)).all()
    assert (queued.chip_after > early).all()
    chipped = wins.loc[wins.state == "chipped"]
    assert (chipped.end_time + pd.Timedelta(days=2) <= early).all()
    idx = read_index(root)
    assert len(idx) and (pd.to_datetime(idx.scene_datetime, utc=True) < last).all()
    later = run_batch(cfg, RunOptions(max_ships=5), now=last + pd.Timedelta(days=3))
    assert later.chip is not None and later.chip.n_chips > 0
    idx = read_index(root)
    assert (pd.to_datetime(idx.scene_datetime, utc=True) == last).any()
    assert idx.mmsi.nunique() <= 5
    assert set(WindowStore(DatasetLayout.of(cfg).ops_db).counts()) == {"chipped"}


def test_dry_run_ais_is_refused_outside_the_embedded_world(tmp_path):
    cfg = build_config({"stac": {"api_url": "http://127.0.0.1:9"},
                        "storage": {"root": str(tmp_path)}}, environ={}, dotenv_path=None)
    with pytest.raises(Exception, match="only for the embedded world"):
        run_batch(cfg, RunOptions(dry_run_ais=True), control=RunControl())


@pytest.mark.slow
def test_continuous_stops_on_sigterm_and_resumes(world, tmp_path):
    root = tmp_path / "cont"
    root.mkdir()
    os.symlink(world.root, root / "world")
    cfg = demo_cfg_file(tmp_path, root)
    exe = Path(sys.executable).parent / "s2xr"
    log = tmp_path / "continuous.log"
    with log.open("w") as fh:
        proc = subprocess.Popen([str(exe), "run", "--config", str(cfg), "--continuous",
                                 "--interval-min", "60", "--max-ships", "6"],
                                stdout=fh, stderr=subprocess.STDOUT, text=True)
    try:
        # wait for the first cycle to end (its run row is done), then SIGTERM in the pause;
        # the bound is generous (a loaded CI machine) and the child dies if the test fails
        db = DatasetLayout.of(load_config(cfg)).ops_db
        deadline = time.monotonic() + 600
        done = 0
        while not done and proc.poll() is None and time.monotonic() < deadline:
            if db.exists():
                with connect(db) as c:
                    done = c.execute("SELECT COUNT(*) FROM runs WHERE kind='run' AND "
                                     "status='done'").fetchone()[0]
            if not done:
                time.sleep(0.5)
        assert done, f"no cycle finished: {log.read_text()[-3000:]}"
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out = log.read_text()
    assert proc.returncode == 0, out
    assert "stopped cleanly" in out
    n = len(assert_stores_agree(root))
    assert n > 0
    # resume: a new batch adds nothing (all windows chipped), stores still agree
    res = CliRunner().invoke(main, ["run", "--config", str(cfg), "--max-ships", "6"])
    assert res.exit_code == 0, res.output
    assert len(assert_stores_agree(root)) == n


def test_limit_plan_binds_one_chip_per_ship_and_caps():
    from s2xr.chips.limits import limit_plan

    plan = pd.DataFrame({"chip_id": [f"c{i}" for i in range(6)],
                         "mmsi": [1, 1, 2, 2, 3, 4],
                         "dt_seconds": [50.0, -5.0, 3.0, 3.0, None, 10.0]})
    existing = pd.DataFrame({"mmsi": [4], "qa_pass": [True]})
    one = limit_plan(plan, existing, one_chip_per_ship=True)
    assert list(one.chip_id) == ["c1", "c2", "c4"]  # nearest in time; tie → chip_id; 4 has one
    assert list(limit_plan(plan, existing, max_chips=2).chip_id) == ["c0", "c1"]
    assert list(limit_plan(plan, existing, max_chips=2, one_chip_per_ship=True).chip_id) == \
        ["c1", "c2"]


@pytest.mark.slow
def test_bound_dry_run_gives_one_chip_per_ship(world, tmp_path):
    root = tmp_path / "bound"
    root.mkdir()
    os.symlink(world.root, root / "world")
    cfg = load_config(demo_cfg_file(tmp_path, root))
    res = run_batch(cfg, RunOptions(max_ships=6, bind_chips_to_ships=True, dry_run_ais=True))
    idx = read_index(root)
    assert res.chip is not None and 0 < len(idx) <= 6 and idx.mmsi.is_unique
    assert set(idx.provider) == {"synthetic"} and res.ais_provider == "synthetic"


@pytest.mark.parametrize("restrict", [True, False])
def test_live_capture_follows_the_schedule_windows(stac_server, tmp_path, monkeypatch,
                                                   restrict):
    """The real-service path of `s2xr run` against the replay server: windows that ended
    before the run are `missed`; the others are captured (restricted: subscribed to the
    active tiles' boxes only, during their windows), then chipped after a lag of 0."""
    from s2xr.ais.aisstream import Box, boxes_for_tiles
    from s2xr.ais.replay import ReplayServerThread
    from s2xr.ais.synthetic import synthetic_tracks, to_aisstream_frames

    key = "live-run-key-31c7"
    monkeypatch.setenv("AISSTREAM_API_KEY", key)
    areas = {"30STE": Box(35.4, -5.9, 35.8, -5.5), "33TUK": Box(44.5, 12.8, 44.9, 13.4)}
    t0 = pd.Timestamp.now(tz="UTC")
    sec = pd.Timedelta(seconds=1)
    # fixes over the next two minutes, all sent on connection: what is captured depends on
    # the windows (times relative to the run's own `now`), not on how busy the machine is
    pts = pd.concat([synthetic_tracks(3, t0, t0 + 120 * sec, box=b, step_s=2, seed=i,
                                      first_mmsi=235_900_001 + 100 * i)
                     for i, b in enumerate(areas.values())])

    def schedule_at(cfg, opts, world, now):  # the predictor: no planning, fixed windows
        return pd.DataFrame({
            "tile_id": ["19TCF", "30STE", "33TUK"], "satellite": ["S2A", "S2B", "S2C"],
            "start_time_utc": [now - pd.Timedelta(hours=2), now + 1 * sec, now + 2 * sec],
            "end_time_utc": [now - pd.Timedelta(hours=1), now + 6 * sec, now + 7 * sec],
            "source": "tle"})

    with ReplayServerThread(to_aisstream_frames(pts), speed=None, valid_keys={key}) as srv:
        cfg = build_config({"stac": {"api_url": stac_server.url,
                                     "collection": "sentinel-2-l2a"},
                            "ais": {"url": srv.url, "watchdog_s": 60},
                            "ops": {"lag_days": 0}, "storage": {"root": str(tmp_path)}},
                           environ=dict(os.environ), dotenv_path=None)
        res = run_batch(cfg, RunOptions(restrict_to_schedule=restrict), predictor=schedule_at)
    states = WindowStore(DatasetLayout.of(cfg).ops_db).windows().set_index("tile_id")[
        "state"].to_dict()
    assert states == {"19TCF": "missed", "30STE": "chipped", "33TUK": "chipped"}
    subs = [s["BoundingBoxes"] for s in srv.stats.subscriptions]
    if restrict:
        assert subs[0] == [b.to_aisstream() for b in boxes_for_tiles(["30STE"])]
        assert [b.to_aisstream() for b in boxes_for_tiles(["33TUK"])] in subs
    else:
        assert len(subs) == 1 and subs[0] == [[[-90.0, -180.0], [90.0, 180.0]]]
    assert res.ais_points > 0 and res.chip is not None  # searched; no scene at `now`
    assert res.chip.n_chips == 0 and (res.chip.rejects["stage"] == "search").any()
    assert key not in json.dumps(srv.stats.subscriptions)


@pytest.mark.slow
def test_windows_captured_by_a_stopped_run_are_chipped_later(world, tmp_path):
    """A run stopped right after capture leaves its windows `captured`; a later run whose
    schedule no longer lists them still chips them."""
    root = tmp_path / "stranded"
    root.mkdir()
    os.symlink(world.root, root / "world")
    cfg = load_config(demo_cfg_file(tmp_path, root))
    control = RunControl()
    control.subscribe(lambda snap: control.request_stop() if snap["stage"] == "collect"
                      and not snap["stop_requested"] else None)
    first = run_batch(cfg, RunOptions(max_ships=4, dry_run_ais=True), control=control)
    assert first.stopped and first.chip is None
    captured = WindowStore(DatasetLayout.of(cfg).ops_db).windows(["captured"])
    assert len(captured) > 0
    later = pd.to_datetime(captured.end_time.max()) + pd.Timedelta(days=20)
    res = run_batch(cfg, RunOptions(max_ships=4, dry_run_ais=True,
                                    start=later.floor("D"), days=1))
    assert res.chip is not None and res.chip.n_chips > 0
    states = WindowStore(DatasetLayout.of(cfg).ops_db).windows().set_index("window_id")["state"]
    assert (states.loc[captured.window_id] == "chipped").all()


def test_a_run_that_adds_nothing_says_why():
    from pipelines.chip_job import ChipJobResult
    from pipelines.run_job import RunResult

    chip = ChipJobResult(root=Path("."), n_points=10, n_items=2, n_searches=2, n_planned=5,
                         n_skipped_existing=5, n_chips=0, n_passed=0,
                         rejects=pd.DataFrame())
    index = pd.DataFrame({"qa_pass": [True, True, False, False, False],
                          "qa_reason": ["", "", "cloud 0.30>0.05", "cloud 0.20>0.05; land "
                                        "0.50>0.2", "land 0.40>0.2"]})
    res = RunResult(root=Path("."), n_windows=3, chip=chip)
    assert res.outcome(index) == ("0 new chip(s) passed: 5 of 5 planned already in the "
                                  "dataset; the dataset holds 2 passed, 3 rejected (2 cloud, "
                                  "1 land)")
    res.chip = ChipJobResult(root=Path("."), n_points=10, n_items=2, n_searches=2,
                             n_planned=6, n_skipped_existing=5, n_chips=1, n_passed=1,
                             rejects=pd.DataFrame())
    assert res.outcome(index) == ("1 new chip(s) passed: 5 of 6 planned already in the "
                                  "dataset")
    assert RunResult(root=Path("."), n_windows=4, n_windows_queued=4).outcome(
        index.iloc[:0]) == "0 new chip(s) passed: no window due: 4 waiting for the L2A lag, 0 later"
