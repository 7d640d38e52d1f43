"""`s2xr run` on real services (configs/earth-search.yaml): a run that cannot succeed stops
before it starts (exit 2), and the summary and exit status tell captured, missed (with the
reason), later and chipped windows apart (exit 3 when windows were missed)."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from pipelines import run_cmd
from pipelines.cli import main
from pipelines.run_job import EXIT_MISSED, RunOptions, run_batch
from pipelines.run_stages import NOT_CAPTURING, due_for_capture
from s2xr.config import load_config
from s2xr.demo.stac_server import free_port
from s2xr.ops.windows import WindowStore
from s2xr.store.layout import DatasetLayout

CONFIG = Path(__file__).resolve().parent.parent / "configs" / "earth-search.yaml"


def real_config(tmp: Path, **sections: dict) -> Path:
    data = yaml.safe_load(CONFIG.read_text())
    data["storage"]["root"] = str(tmp / "ds")
    for k, v in sections.items():
        data.setdefault(k, {}).update(v)
    p = tmp / "earth-search.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def test_without_an_api_key_the_run_stops_before_it_starts(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no .env here
    monkeypatch.delenv("AISSTREAM_API_KEY", raising=False)
    res = CliRunner().invoke(main, ["run", "--config", str(CONFIG)])
    assert res.exit_code == 2, res.output
    assert "no AISSTREAM_API_KEY" in res.output and "nothing was started" in res.output
    assert not (tmp_path / "s2xr-data").exists()  # no lock, no ops DB, no schedule
    cont = CliRunner().invoke(main, ["run", "--config", str(CONFIG), "--continuous"])
    assert cont.exit_code == 2 and "no AISSTREAM_API_KEY" in cont.output


def test_without_tiles_the_run_says_where_to_put_them(tmp_path, monkeypatch):
    monkeypatch.setenv("AISSTREAM_API_KEY", "k-tiles")
    cfg = real_config(tmp_path, planning={"tiles": []})
    res = CliRunner().invoke(main, ["run", "--config", str(cfg)])
    assert res.exit_code == 2 and "planning.tiles" in res.output and "--tiles" in res.output
    bad = CliRunner().invoke(main, ["run", "--config", str(cfg), "--tiles", "31UET,99ZZZ"])
    assert bad.exit_code == 2 and "99ZZZ" in bad.output
    assert not (tmp_path / "ds").exists()


def test_the_capture_look_ahead_chains_windows():
    t = pd.Timestamp("2026-12-01T10:00:00Z")
    m = pd.Timedelta(minutes=1)
    wins = pd.DataFrame({"window_id": list("abcde"),
                         "start_time": [t + 10 * m, t + 45 * m, t + 70 * m, t + 200 * m,
                                        t - 5 * m],
                         "end_time": [t + 30 * m, t + 65 * m, t + 90 * m, t + 220 * m,
                                      t + 5 * m]})
    # a (starts in 10 min), e (open now), b (45 min: within 30 of a's end), c (after b);
    # d starts 110 min after c ended: left for a later batch
    assert set(due_for_capture(wins, t, 30).window_id) == {"a", "b", "c", "e"}
    assert set(due_for_capture(wins, t, 0).window_id) == {"e"}


def test_summary_and_exit_status_tell_missed_captured_and_later_apart(tmp_path,
                                                                      monkeypatch):
    """A window that ended while no run was capturing and one whose capture never reached
    the stream are `missed` (each with its reason); one starting beyond the look-ahead stays
    `planned`; the run exits 3 and says why."""
    monkeypatch.setenv("AISSTREAM_API_KEY", "k-missed")
    dead = f"ws://127.0.0.1:{free_port()}/v0/stream"  # nothing listens: connection refused
    cfg_path = real_config(tmp_path, ais={"url": dead, "backoff_initial_s": 0.2,
                                          "backoff_max_s": 0.5})
    sec = pd.Timedelta(seconds=1)

    def schedule_at(cfg, opts, world, now):
        return pd.DataFrame({
            "tile_id": ["31UET", "30STE", "31UET"], "satellite": ["S2A", "S2B", "S2C"],
            "start_time_utc": [now - pd.Timedelta(hours=2), now + sec,
                               now + pd.Timedelta(hours=3)],
            "end_time_utc": [now - pd.Timedelta(hours=1), now + 3 * sec,
                             now + pd.Timedelta(hours=3, minutes=20)],
            "source": "tle"})

    monkeypatch.setattr(run_cmd, "run_batch", functools.partial(run_batch,
                                                                predictor=schedule_at))
    res = CliRunner().invoke(main, ["run", "--config", str(cfg_path)])
    assert res.exit_code == EXIT_MISSED, res.output
    out = res.output
    rows = {ln[:34].strip(): ln.split()[-1] for ln in out.splitlines()
            if ln.startswith("  windows")}
    assert rows == {"windows captured": "0", "windows missed": "2",
                    "windows later (planned)": "1", "windows queued (L2A lag)": "0",
                    "windows chipped": "0"}
    assert f"missed: 1 {NOT_CAPTURING}" in out
    assert "missed: 1 no connection to 127.0.0.1" in out and "exit status 3" in out
    states = WindowStore(DatasetLayout.of(load_config(cfg_path)).ops_db).windows()
    assert states.set_index("satellite")["state"].to_dict() == {
        "S2A": "missed", "S2B": "missed", "S2C": "planned"}
    assert os.environ["AISSTREAM_API_KEY"] not in out


@pytest.mark.parametrize("ahead", [0.0, 30.0])
def test_a_batch_captures_only_what_is_due(tmp_path, monkeypatch, ahead):
    """Nothing due: the run plans, captures nothing, exits 0 and leaves the windows for
    a later batch (a cron run does not block until tomorrow's pass)."""
    monkeypatch.setenv("AISSTREAM_API_KEY", "k-later")
    cfg = load_config(real_config(tmp_path))

    def later(cfg, opts, world, now):
        return pd.DataFrame({"tile_id": ["31UET"], "satellite": ["S2A"],
                             "start_time_utc": [now + pd.Timedelta(minutes=45)],
                             "end_time_utc": [now + pd.Timedelta(minutes=65)],
                             "source": "tle"})

    res = run_batch(cfg, RunOptions(capture_ahead_min=ahead), predictor=later)
    assert (res.n_windows_later, res.n_windows_captured, res.exit_code) == (1, 0, 0)
