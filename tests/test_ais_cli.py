"""`s2xr collect-ais --schedule ... --restrict-to-schedule` against the replay server.

The capture's clock is a test clock that moves from one schedule window to the next only once
the server has sent the window's subscription everything it wanted and the capture has handled
it: the test checks what happens in each window, however slow the machine is.
"""

from __future__ import annotations

import threading

import pandas as pd
from click.testing import CliRunner
from helpers.ws_fuzz import ManualClock, fuzz_server_thread, wait_until_sync

from pipelines.cli import main
from s2xr.ais.aisstream import Box, boxes_for_tiles
from s2xr.ais.capture import AisCapture
from s2xr.ais.synthetic import synthetic_tracks, to_aisstream_frames

KEY = "s2xr-CLI-key-90b1e2"
# (tile, a box inside it): Gibraltar, northern Adriatic, off Cape Cod
AREAS = {"30STE": Box(35.4, -5.9, 35.8, -5.5), "33TUK": Box(44.5, 12.8, 44.9, 13.4),
         "19TCF": Box(41.1, -70.8, 41.4, -70.3)}
FIRST_MMSI = 235_000_001  # + 100 per area


def test_collect_ais_restricted_to_schedule_subscribes_to_active_tiles(tmp_path, monkeypatch):
    monkeypatch.setenv("AISSTREAM_API_KEY", KEY)
    now = pd.Timestamp.now(tz="UTC")
    sec = pd.Timedelta(seconds=1)
    pts = pd.concat([synthetic_tracks(4, now - 60 * sec, now - 52 * sec, box=b, step_s=0.5,
                                      seed=i, first_mmsi=FIRST_MMSI + 100 * i)
                     for i, b in enumerate(AREAS.values())])
    frames = to_aisstream_frames(pts)
    # the windows lie an hour ahead in the capture's clock (ManualClock): the CLI's start-up
    # time cannot eat into them; the test moves the clock from window to window
    origin = now + pd.Timedelta(hours=1)
    plan = tmp_path / "plan"
    plan.mkdir()
    pd.DataFrame({
        "tile_id": ["19TCF", "30STE", "33TUK"],
        "satellite": ["S2A", "S2B", "S2C"],
        "start_time_utc": [now - pd.Timedelta(hours=2), origin + 1.5 * sec, origin + 2.5 * sec],
        "end_time_utc": [now - pd.Timedelta(hours=1), origin + 3.5 * sec, origin + 4.5 * sec],
    }).to_csv(plan / "overpass_schedule.csv", index=False)
    edges = [origin + x * sec for x in (1.5, 2.5, 3.5, 4.5)]  # the three segments' limits
    clock = ManualClock(now.timestamp())
    caps: list[AisCapture] = []
    init = AisCapture.__init__

    def with_test_clock(self, *args, **kwargs):
        init(self, *args, **{**kwargs, "clock": clock})
        caps.append(self)

    monkeypatch.setattr(AisCapture, "__init__", with_test_clock)
    out = tmp_path / "capture"
    errors: list[BaseException] = []
    done = threading.Event()

    def drive(srv) -> None:
        """Open each segment, wait until its subscription got and the capture handled the
        whole (filtered) stream, then move on; end the last one. Whatever happens, the clock
        ends past every window so that the CLI returns."""
        try:
            for k, edge in enumerate(edges[:-1]):
                clock.set(edge.timestamp())

                def handled(k=k) -> bool:
                    ses = srv.stats.sessions
                    return len(ses) == k + 1 and ses[k].exhausted and len(caps) == 1 and \
                        caps[0].result.connections == k + 1 and \
                        caps[0].frames_on_connection == ses[k].frames_sent

                wait_until_sync(handled, f"segment {k + 1} captured", stop=done)
            clock.set(edges[-1].timestamp())
        except BaseException as exc:
            errors.append(exc)
        finally:
            clock.set((edges[-1] + pd.Timedelta(days=1)).timestamp())

    with fuzz_server_thread(frames, speed=None, replay_from_start=True,
                            valid_keys={KEY}) as srv:
        driver = threading.Thread(target=drive, args=(srv,), name="schedule-clock")
        driver.start()
        try:
            res = CliRunner().invoke(main, [
                "-vv", "collect-ais", "--schedule", str(plan / "overpass_schedule.csv"),
                "--restrict-to-schedule", "--url", srv.url, "--out-dir", str(out),
                "--watchdog", "5"])
        finally:
            done.set()
            driver.join(60)
    assert not driver.is_alive()
    assert not errors, errors
    assert res.exit_code == 0, res.output
    subs = [s["BoundingBoxes"] for s in srv.stats.subscriptions]

    def boxes(*tiles):
        return [b.to_aisstream() for b in boxes_for_tiles(tiles)]

    # one subscription per change of the active tiles; the expired window is not there
    assert subs == [boxes("30STE"), boxes("30STE", "33TUK"), boxes("33TUK")]
    assert all(s["FilterMessageTypes"][0] == "PositionReport"
               for s in srv.stats.subscriptions)
    idx = pd.read_parquet(out / "indexes" / "ais_observations.parquet")
    assert len(idx) > 0 and set(idx.tile_id.dropna()) <= {"30STE", "33TUK"}
    assert set(idx.mmsi // 100) == {FIRST_MMSI // 100, FIRST_MMSI // 100 + 1}  # not 19TCF's
    assert list(out.glob("ais/*/ais_overpass_30STE.parquet"))
    assert list(out.glob("ais/*/ais_overpass_33TUK.parquet"))
    assert caps[0].result.watchdog_timeouts == 0  # the window ends are no silence
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
