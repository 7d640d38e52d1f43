"""Websocket capture against the aisstream replay server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from websockets.asyncio.client import connect

from s2xr.ais.aisstream import CAPTURE_TYPES, WORLD, Box
from s2xr.ais.capture import AisCapture, CaptureSettings
from s2xr.ais.replay import Outage, ReplayServer
from s2xr.ais.sampling import DailySampler
from s2xr.ais.storage import INDEX_PATH, AisStore, read_capture
from s2xr.ais.synthetic import (
    MALFORMED_KINDS,
    corrupt_frames,
    synthetic_tracks,
    to_aisstream_frames,
)
from s2xr.errors import AisError

DATA = Path(__file__).parent / "data" / "ais"
BOX = Box(35.3, -6.2, 36.0, -5.3)  # Strait of Gibraltar, inside tile 30STE
AROUND = Box(34.5, -7.5, 37.0, -4.0)  # subscribed: ships starting in BOX stay inside
KEY = "s2xr-TEST-key-7f3a9c"  # must never appear in logs, files or errors


def fast(url: str, **kw) -> CaptureSettings:
    base = dict(url=url, boxes=(WORLD,), watchdog_s=0.4, backoff_initial_s=0.02,
                backoff_max_s=0.2, flush_rows=1500, flush_interval_s=5)
    base.update(kw)
    return CaptureSettings(**base)


async def capture_all(server: ReplayServer, cap: AisCapture, settle: float = 0.3):
    """Run ``cap`` until the server has delivered its whole stream, then stop it cleanly."""
    task = asyncio.create_task(cap.run())
    await asyncio.wait_for(server.exhausted.wait(), 60)
    await asyncio.sleep(settle)
    cap.request_stop()
    return await asyncio.wait_for(task, 10)


def expected_records(frames: list[str]) -> tuple[set, set]:
    """(position keys, static keys) of the valid frames, from the generator's own JSON."""
    pos, st = set(), set()
    for f in frames:
        d = json.loads(f)
        meta, mtype = d["MetaData"], d["MessageType"]
        t = pd.Timestamp(meta["time_utc"].replace(" +0000 UTC", ""), tz="UTC")
        if mtype in ("PositionReport", "StandardClassBPositionReport"):
            pos.add((meta["MMSI"], t))
        else:
            part = d["Message"][mtype].get("PartNumber")
            st.add((meta["MMSI"], t, mtype, part))
    return pos, st


def test_acceptance_10000_frames_5pc_malformed_disconnect_and_silence(tmp_path):
    """Every valid position and static record stored exactly once across a forced disconnect
    and a silent outage longer than the watchdog (the server also re-sends frames)."""
    now = pd.Timestamp.now(tz="UTC").floor("s")
    pts = synthetic_tracks(110, now - pd.Timedelta(hours=2), now - pd.Timedelta(minutes=105),
                           box=BOX, step_s=10, seed=7)
    valid = to_aisstream_frames(pts)[:9500]
    frames, kinds = corrupt_frames(valid, 500, seed=3)
    assert len(frames) == 10_000 and set(kinds) == set(MALFORMED_KINDS)
    exp_pos, exp_static = expected_records(valid)

    async def main():
        async with ReplayServer(frames, valid_keys={KEY}, resend_on_reconnect=40,
                                outages=[Outage("disconnect", after=3000),
                                         Outage("silence", after=6500, seconds=1.2)]) as srv:
            cap = AisCapture(KEY, fast(srv.url, boxes=(AROUND,)),
                             AisStore(tmp_path, source="t"))
            res = await capture_all(srv, cap)
            cap.close()
            return res, srv.stats

    res, stats = asyncio.run(main())
    assert stats.outages_done == 2 and stats.connections >= 3
    assert res.disconnects >= 1 and res.watchdog_timeouts >= 1
    assert res.skipped["duplicate"] >= 40  # the re-sent frames were recognised

    idx = pd.read_parquet(tmp_path / INDEX_PATH)
    got = set(zip(idx.mmsi, idx.time, strict=True))
    assert len(idx) == len(got) == len(exp_pos)  # exactly once
    assert got == exp_pos
    assert (idx.provider == "synthetic").all()
    static = pd.concat(pd.read_parquet(p) for p in tmp_path.glob("ais/*/ais_static.parquet"))
    got_st = {(m, t, mt, {"A": False, "B": True}.get(p))
              for m, t, mt, p in zip(static.mmsi, static.time, static.message_type,
                                     static.part, strict=True)}
    assert len(static) == len(got_st) == len(exp_static) and got_st == exp_static
    # per-tile overpass files: each fix once per tile it lies in, nothing else
    files = list(tmp_path.glob("ais/*/ais_overpass_*.parquet")) + \
        list(tmp_path.glob("ais/*/ais_outside_tiles.parquet"))
    per_tile = pd.concat(pd.read_parquet(p).assign(file=p.name) for p in files)
    assert not per_tile.duplicated(["file", "mmsi", "time"]).any()
    assert set(zip(per_tile.mmsi, per_tile.time, strict=True)) == exp_pos
    assert list(tmp_path.glob("ais/*/ais_overpass_30STE.parquet"))
    # static data joined onto positions; the raw log holds every frame received
    assert idx.length.notna().mean() > 0.9 and idx.ship_type.notna().mean() > 0.9
    raw = list(tmp_path.glob("ais/*/aisstream_raw.jsonl"))
    assert sum(len(p.read_text().splitlines()) for p in raw) == res.frames
    # the capture reads back as a validated AisTable for the chip pipeline
    table = read_capture(tmp_path)
    assert len(table.points) == len(exp_pos) and table.rejects.empty
    assert set(table.points.provider) == {"synthetic"}


def test_rejected_key_raises_clear_error_without_the_key(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)

    async def main():
        async with ReplayServer([], valid_keys={"the-right-key"}) as srv:
            cap = AisCapture(KEY, fast(srv.url), AisStore(tmp_path))
            with pytest.raises(AisError, match="Api Key Is Not Valid") as err:
                await cap.run(pd.Timestamp.now(tz="UTC") + pd.Timedelta(seconds=10))
            return err.value, srv.stats

    err, stats = asyncio.run(main())
    assert stats.rejected == ["Api Key Is Not Valid"] and stats.connections == 1
    assert KEY not in str(err) and "AISSTREAM_API_KEY" in str(err)
    assert KEY not in caplog.text


def test_api_key_never_in_logs_files_or_outputs(tmp_path, caplog, capsys):
    """Debug logging of client, server and websockets on; the key appears nowhere."""
    caplog.set_level(logging.DEBUG)
    frames = (DATA / "messages.jsonl").read_text().splitlines()

    async def main():
        async with ReplayServer(frames, valid_keys={KEY},
                                outages=[Outage("disconnect", after=5)]) as srv:
            cap = AisCapture(KEY, fast(srv.url, mmsi=("538009327", "211306490")),
                             AisStore(tmp_path, xlsx=True))
            res = await capture_all(srv, cap)
            cap.close()
            return res, srv.stats

    res, stats = asyncio.run(main())
    assert res.positions_stored == 2 and stats.subscriptions[0]["FiltersShipMMSI"] == \
        ["538009327", "211306490"]
    assert any(r.name.endswith(".ws") for r in caplog.records)  # websockets logged
    out = capsys.readouterr()
    texts = [caplog.text, out.out, out.err, res.summary(), repr(res), str(stats)]
    texts += [p.read_bytes().decode("latin-1") for p in tmp_path.rglob("*") if p.is_file()]
    assert all(KEY not in t for t in texts)
    assert list(tmp_path.rglob("*.xlsx"))  # the xlsx copies were searched too


def test_real_frames_through_the_wire_with_filters_and_speed(tmp_path):
    """Real aisstream frames: the server filters by type and box; 100× real speed."""
    frames = (DATA / "messages.jsonl").read_text().splitlines()
    t = [pd.Timestamp(json.loads(f)["MetaData"]["time_utc"][:29], tz="UTC") for f in frames]
    span = (max(t) - min(t)).total_seconds()  # 77.7 s of real traffic
    north_sea = Box(50.0, 0.0, 56.0, 12.0)

    async def main():
        async with ReplayServer(DATA / "messages.jsonl", speed=100, valid_keys={KEY}) as srv:
            cap = AisCapture(KEY, fast(srv.url, boxes=(north_sea,), watchdog_s=5),
                             AisStore(tmp_path), sampler=DailySampler(tmp_path, 1, seed=0))
            t0 = time.monotonic()
            res = await capture_all(srv, cap, settle=0.1)
            cap.close()
            return res, srv.stats, time.monotonic() - t0

    res, stats, elapsed = asyncio.run(main())
    assert elapsed >= 0.7 * span / 100  # paced, not dumped
    sub = stats.subscriptions[0]
    assert sub["BoundingBoxes"] == [[[50.0, 0.0], [56.0, 12.0]]]  # latitude first
    assert sub["FilterMessageTypes"] == list(CAPTURE_TYPES)
    idx = pd.read_parquet(tmp_path / INDEX_PATH).set_index("mmsi")
    # in the box: the class A report off Rotterdam and the class B one off Kiel
    assert set(idx.index) == {538009327, 211306490}
    r = idx.loc[538009327]
    assert r.ship_name == "NORDIC QINNGUA" and r.provider == "replay"
    assert r.time == pd.Timestamp("2023-10-15T09:51:08.143077274Z")
    assert stats.frames_sent == res.frames == 3  # + the ShipStaticData off Rotterdam
    assert res.static_stored == 1
    # random sampling: one of the two ships of that day, with its static data
    sample = pd.read_parquet(tmp_path / "ais" / "20231015" / "ais_random_sample.parquet")
    assert len(sample) == 1 and sample.mmsi.iloc[0] in {538009327, 211306490}


def test_subscription_deadline_and_malformed_subscription():
    async def main():
        async with ReplayServer([], subscription_timeout_s=0.3) as srv:
            async with connect(srv.url) as ws:  # says nothing
                late = json.loads(await asyncio.wait_for(ws.recv(), 5))
            async with connect(srv.url) as ws:  # longitude first, as some examples do
                await ws.send(json.dumps({"APIKey": "k",
                                          "BoundingBoxes": [[[-180, -90], [180, 90]]]}))
                lonfirst = json.loads(await asyncio.wait_for(ws.recv(), 5))
            return late, lonfirst, srv.stats

    late, lonfirst, stats = asyncio.run(main())
    assert "3 Seconds" in late["error"]
    assert "latitude first" in lonfirst["error"]
    assert stats.subscriptions == []


def test_unreachable_server_backs_off_exponentially_with_jitter(tmp_path):
    cap = AisCapture(KEY, fast("ws://127.0.0.1:9/v0/stream", backoff_initial_s=0.05,
                               backoff_max_s=0.4, jitter=0.3), AisStore(tmp_path), seed=1)
    delays = [cap.backoff_s(a) for a in range(8)]
    for a, d in enumerate(delays):
        base = min(0.4, 0.05 * 2 ** a)
        assert 0.7 * base <= d <= 1.3 * base
    assert len({round(d, 6) for d in delays[4:]}) > 1  # jitter: capped delays differ
    res = asyncio.run(cap.run(pd.Timestamp.now(tz="UTC") + pd.Timedelta(seconds=1.0)))
    assert res.connections == 0 and 2 <= res.reconnects <= 8
    assert res.stop_reason == "end time reached"


def test_cancel_keeps_everything_received(tmp_path):
    now = pd.Timestamp.now(tz="UTC").floor("s")
    pts = synthetic_tracks(20, now - pd.Timedelta(hours=1), now - pd.Timedelta(minutes=50),
                           box=BOX, step_s=5, seed=2)
    frames = to_aisstream_frames(pts)

    async def main():
        async with ReplayServer(frames, speed=2000, valid_keys={KEY}) as srv:
            cap = AisCapture(KEY, fast(srv.url, flush_rows=10**6, flush_interval_s=600),
                             AisStore(tmp_path))
            task = asyncio.create_task(cap.run())
            while cap.result.positions < 300:
                await asyncio.sleep(0.01)
            task.cancel()  # e.g. Ctrl-C
            with pytest.raises(asyncio.CancelledError):
                await task
            return cap.result

    res = asyncio.run(main())
    assert res.stop_reason == "cancelled" and res.positions < len(pts)
    idx = pd.read_parquet(tmp_path / INDEX_PATH)
    assert len(idx) == res.positions == res.positions_stored  # nothing buffered was lost


def test_capture_never_imports_synthetic_data():
    code = ("import sys, s2xr.ais.capture, s2xr.ais.replay, pipelines.ais_cmd; "
            "assert 's2xr.ais.synthetic' not in sys.modules, 'synthetic imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])
