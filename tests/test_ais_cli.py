"""`s2xr collect-ais --schedule ... --restrict-to-schedule` against the replay server."""

from __future__ import annotations

import time

import pandas as pd
from click.testing import CliRunner

from pipelines.cli import main
from s2xr.ais.aisstream import Box, boxes_for_tiles
from s2xr.ais.replay import ReplayServerThread
from s2xr.ais.synthetic import synthetic_tracks, to_aisstream_frames

KEY = "s2xr-CLI-key-90b1e2"
# (tile, a box inside it): Gibraltar, northern Adriatic, off Cape Cod
AREAS = {"30STE": Box(35.4, -5.9, 35.8, -5.5), "33TUK": Box(44.5, 12.8, 44.9, 13.4),
         "19TCF": Box(41.1, -70.8, 41.4, -70.3)}


def test_collect_ais_restricted_to_schedule_subscribes_to_active_tiles(tmp_path, monkeypatch):
    monkeypatch.setenv("AISSTREAM_API_KEY", KEY)
    now = pd.Timestamp.now(tz="UTC")
    sec = pd.Timedelta(seconds=1)
    pts = pd.concat([synthetic_tracks(4, now, now + 8 * sec, box=b, step_s=0.5, seed=i,
                                      first_mmsi=990_000_001 + 100 * i)
                     for i, b in enumerate(AREAS.values())])
    frames = to_aisstream_frames(pts)
    now = pd.Timestamp.now(tz="UTC")  # windows relative to the start of the run
    plan = tmp_path / "plan"
    plan.mkdir()
    pd.DataFrame({
        "tile_id": ["19TCF", "30STE", "33TUK"],
        "satellite": ["S2A", "S2B", "S2C"],
        "start_time_utc": [now - pd.Timedelta(hours=2), now + 1.5 * sec, now + 2.5 * sec],
        "end_time_utc": [now - pd.Timedelta(hours=1), now + 3.5 * sec, now + 4.5 * sec],
    }).to_csv(plan / "overpass_schedule.csv", index=False)
    out = tmp_path / "capture"
    with ReplayServerThread(frames, speed=1.0, valid_keys={KEY}) as srv:
        t0 = time.monotonic()
        res = CliRunner().invoke(main, [
            "-vv", "collect-ais", "--schedule", str(plan / "overpass_schedule.csv"),
            "--restrict-to-schedule", "--url", srv.url, "--out-dir", str(out),
            "--watchdog", "5"])
        elapsed = time.monotonic() - t0
    assert res.exit_code == 0, res.output
    assert elapsed < 20  # exited by itself after the last window
    subs = [s["BoundingBoxes"] for s in srv.stats.subscriptions]

    def boxes(*tiles):
        return [b.to_aisstream() for b in boxes_for_tiles(tiles)]

    # one subscription per change of the active tiles; the expired window is not there
    assert subs == [boxes("30STE"), boxes("30STE", "33TUK"), boxes("33TUK")]
    assert all(s["FilterMessageTypes"][0] == "PositionReport"
               for s in srv.stats.subscriptions)
    idx = pd.read_parquet(out / "indexes" / "ais_observations.parquet")
    assert len(idx) > 0 and set(idx.tile_id.dropna()) <= {"30STE", "33TUK"}
    assert not (idx.mmsi // 100 == 990_000_201 // 100).any()  # the expired tile's ships
    assert list(out.glob("ais/*/ais_overpass_30STE.parquet"))
    assert list(out.glob("ais/*/ais_overpass_33TUK.parquet"))
    assert "last window ended" in res.output and KEY not in res.output


def test_collect_ais_without_key_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.delenv("AISSTREAM_API_KEY", raising=False)
    monkeypatch.chdir(tmp_path)  # no .env here
    res = CliRunner().invoke(main, ["collect-ais", "--url", "ws://127.0.0.1:9/v0/stream",
                                    "--out-dir", str(tmp_path / "o"), "--duration", "1"])
    assert res.exit_code == 2 and "AISSTREAM_API_KEY" in res.output


def test_collect_ais_schedule_errors_name_the_column(tmp_path, monkeypatch):
    monkeypatch.setenv("AISSTREAM_API_KEY", KEY)
    bad = tmp_path / "s.csv"
    bad.write_text("tile,start_time_utc,end_time_utc\n30STE,2026-01-01T00:00Z,"
                   "2026-01-01T00:10Z\n")
    res = CliRunner().invoke(main, ["collect-ais", "--schedule", str(bad),
                                    "--restrict-to-schedule", "--out-dir", str(tmp_path)])
    assert res.exit_code == 2 and "tile_id" in res.output
