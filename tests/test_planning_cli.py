"""`s2xr predict-overpasses`: every mode writes the schedule, prints the table, plots."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from pipelines.cli import main
from s2xr.ais.schedule import read_schedule

ESA = Path(__file__).parent / "data" / "esa"


@pytest.mark.parametrize("mode", ["tle", "auto", "backfill"])
def test_cli_writes_schedule_table_and_plot(tmp_path, mode):
    out, png = tmp_path / "sched.csv", tmp_path / "sched.png"
    res = CliRunner().invoke(main, ["-q", "predict-overpasses", "--mode", mode, "--tiles",
                                    "39QTA,30STF", "--start", "2026-09-25", "--days", "10",
                                    "--out", str(out), "--plot", str(png)])
    assert res.exit_code == 0, res.output
    assert "TLE epochs: S2A 2026-10-01T07:09:57Z" in res.output
    assert "S2C 2026-09-30T23:26:32Z" in res.output
    df = read_schedule(out)
    assert set(df["tile_id"]) == {"39QTA", "30STF"}
    assert {"S2A", "S2B", "S2C"} <= set(df["satellite"])
    assert set(df["source"]) == {"backfill" if mode == "backfill" else "tle"}
    s2c = df[(df["satellite"] == "S2C") & (df["tile_id"] == "39QTA")]
    t = pd.Timestamp("2026-09-30T07:24:41Z")
    assert ((s2c["start_time_utc"] <= t) & (s2c["end_time_utc"] >= t)).any()
    assert "39QTA  S2C  2026-09-30 07:14" in res.output  # the printed table
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert len(list((tmp_path / "schedules").glob("*/sched_*Z.csv"))) == 1


def test_cli_esa_plan_mode_and_default_output(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"storage:\n  root: {tmp_path / 'ds'}\nplanning:\n  tiles: [T39QTA]\n")
    res = CliRunner().invoke(main, ["-q", "predict-overpasses", "--config", str(cfg),
                                    "--mode", "esa_plan", "--esa-plan",
                                    str(ESA / "S2A_acquisition_plan_trimmed.kml"),
                                    "--start", "2024-11-28", "--days", "3"])
    assert res.exit_code == 0, res.output
    sched = tmp_path / "ds" / "plan" / "overpass_schedule.csv"
    df = read_schedule(sched)
    assert list(df["plan_id"]) == ["49295-1"] and list(df["source"]) == ["esa_plan"]
    assert list((tmp_path / "ds" / "plan" / "schedules").iterdir())


def test_cli_bad_input_exits_2_with_the_reason(tmp_path):
    res = CliRunner().invoke(main, ["-q", "predict-overpasses", "--mode", "tle", "--tiles",
                                    "39QTA,QQQ,99ZZZ", "--start", "2026-09-25", "--days", "1",
                                    "--out", str(tmp_path / "s.csv")])
    assert res.exit_code == 2
    assert "QQQ" in res.output and "99ZZZ" in res.output
    bad = tmp_path / "bad.tle"
    bad.write_text("SENTINEL-2A\n1 40697U 15028A   26274.29857647\n")
    res = CliRunner().invoke(main, ["-q", "predict-overpasses", "--tle", str(bad), "--tiles",
                                    "39QTA", "--start", "2026-09-25", "--days", "1",
                                    "--out", str(tmp_path / "s.csv")])
    assert res.exit_code == 2 and "line 2" in res.output


def test_out_takes_a_file_path_not_a_url(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(main, ["-q", "predict-overpasses", "--mode", "tle", "--tiles",
                                    "30STE", "--start", "2026-09-25", "--days", "1",
                                    "--out", "s3://ships/plan.csv"])
    assert res.exit_code == 2 and "--out takes a local CSV path" in res.output
    assert not list(tmp_path.iterdir())  # no ./s3:/ships/… folder
