"""Websocket capture against the aisstream replay server on 127.0.0.1.

No test here depends on the machine's speed: they wait for what the server and the capture
report (sessions exhausted, frames handled, reconnections) with generous upper bounds, outages
last until the client reacts (a silence ends when the watchdog reconnects), and time the
capture itself measures (end times, back-off) comes from an injected clock where it matters.
"""

from __future__ import annotations

import asyncio
import html
import json
import logging
import math
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote, quote_plus

import pandas as pd
import pytest
from helpers.ws_fuzz import (
    ECHO_KEY,
    ECHO_KEY_QUOTED,
    ECHO_KEY_URL,
    WAIT_S,
    ManualClock,
    capture_task,
    capture_until_caught_up,
    expected_records,
    fuzz_server,
    go_json_escape,
    secret_hits,
    wait_until,
)
from websockets.asyncio.client import connect

from s2xr.ais.aisstream import CAPTURE_TYPES, WORLD, Box
from s2xr.ais.capture import AisCapture, CaptureSettings
from s2xr.ais.frames import FrameParser
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
SHIPS = 235_000_001  # first synthetic MMSI: valid ship stations (MID 235)


def fast(url: str, **kw) -> CaptureSettings:
    base = dict(url=url, boxes=(WORLD,), watchdog_s=0.4, backoff_initial_s=0.02,
                backoff_max_s=0.2, flush_rows=1500, flush_interval_s=5)
    base.update(kw)
    return CaptureSettings(**base)


capture_all = capture_until_caught_up  # run until the whole stream is handled, then stop


def slow_storage(monkeypatch, seconds: float) -> None:
    """Every parquet write of an :class:`AisStore` takes ``seconds`` longer (blocking, as a
    busy disk or CPU would): the capture falls far behind the server."""
    for name in ("write_positions", "write_static"):
        orig = getattr(AisStore, name)

        def slow(self, *a, _orig=orig, **kw):
            time.sleep(seconds)
            return _orig(self, *a, **kw)

        monkeypatch.setattr(AisStore, name, slow)


@pytest.mark.parametrize("busy", [False, True], ids=["quiet", "busy"])
def test_acceptance_10000_frames_5pc_malformed_disconnect_and_silence(tmp_path, monkeypatch,
                                                                       busy):
    """Every valid position and static record stored exactly once across a forced disconnect
    and a silent outage that lasts until the watchdog reconnects (the server also re-sends
    frames) — also on a busy machine. "busy": store writes are slow and, while the server is
    silent, handling each frame takes 5 ms: the capture's backlog (hundreds of frames in
    socket buffers) then takes seconds to drain — longer than any fixed silence would last,
    which is how this test used to fail under load."""
    busy_server: list[ReplayServer] = []
    if busy:
        slow_storage(monkeypatch, 0.2)
        parse = FrameParser.parse

        def parse_on_a_busy_machine(self, *a, **kw):
            srv = busy_server[0] if busy_server else None
            if srv is not None and srv.stats.outages_done == 2 and srv.stats.connections == 2:
                time.sleep(0.005)  # the server is silent, the capture still has a backlog
            return parse(self, *a, **kw)

        monkeypatch.setattr(FrameParser, "parse", parse_on_a_busy_machine)
    now = pd.Timestamp.now(tz="UTC").floor("s")
    pts = synthetic_tracks(110, now - pd.Timedelta(hours=2), now - pd.Timedelta(minutes=105),
                           box=BOX, step_s=10, seed=7, first_mmsi=SHIPS)
    valid = to_aisstream_frames(pts)[:9500]
    frames, kinds = corrupt_frames(valid, 500, seed=3)
    assert len(frames) == 10_000 and set(kinds) == set(MALFORMED_KINDS)
    exp_pos, exp_static = expected_records(valid)

    async def main():
        async with ReplayServer(frames, valid_keys={KEY}, resend_on_reconnect=40,
                                outages=[Outage("disconnect", after=3000),
                                         Outage("silence", after=6500,
                                                seconds=math.inf)]) as srv:
            busy_server.append(srv)
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
                await cap.run(pd.Timestamp.now(tz="UTC") + pd.Timedelta(seconds=WAIT_S))
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
            res = await capture_all(srv, cap)
            cap.close()
            return res, srv.stats, time.monotonic() - t0

    res, stats, elapsed = asyncio.run(main())
    assert elapsed >= 0.7 * span / 100  # paced, not dumped (a lower bound: load only adds)
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
        async with ReplayServer([], subscription_timeout_s=0.3) as srv, \
                connect(srv.url) as ws:  # says nothing
            late = json.loads(await asyncio.wait_for(ws.recv(), WAIT_S))
        stats = srv.stats
        async with ReplayServer([], subscription_timeout_s=WAIT_S) as srv:
            async with connect(srv.url) as ws:  # longitude first, as some examples do
                await ws.send(json.dumps({"APIKey": "k",
                                          "BoundingBoxes": [[[-180, -90], [180, 90]]]}))
                lonfirst = json.loads(await asyncio.wait_for(ws.recv(), WAIT_S))
            return late, lonfirst, stats, srv.stats

    late, lonfirst, stats, stats2 = asyncio.run(main())
    assert "3 Seconds" in late["error"]
    assert "latitude first" in lonfirst["error"]
    assert stats.subscriptions == stats2.subscriptions == []


def closed_port_url() -> str:
    """A ws:// URL on 127.0.0.1 where nothing listens (a port just released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"ws://127.0.0.1:{port}/v0/stream"


def test_unreachable_server_backs_off_exponentially_with_jitter(tmp_path):
    """The back-off runs on the capture's clock: with a test clock, waits take no real time
    and the number of attempts before the end time is exact, however busy the machine."""
    settings = fast(closed_port_url(), backoff_initial_s=0.05, backoff_max_s=0.4, jitter=0.3)
    twin = AisCapture(KEY, settings, AisStore(tmp_path), seed=1)  # same seed: same delays
    delays = [twin.backoff_s(a) for a in range(12)]
    for a, d in enumerate(delays[:8]):
        base = min(0.4, 0.05 * 2 ** a)
        assert 0.7 * base <= d <= 1.3 * base
    assert len({round(d, 6) for d in delays[4:]}) > 1  # jitter: capped delays differ
    clock = ManualClock(auto=True)
    t0 = clock.time()
    cap = AisCapture(KEY, settings, AisStore(tmp_path), seed=1, clock=clock)
    res = asyncio.run(cap.run(clock.now() + pd.Timedelta(seconds=1.0)))
    # after a failed attempt, the capture waits delays[j] and tries again if the first j
    # delays ended before the end time
    assert res.connections == 0
    assert res.reconnects == sum(1 for j in range(12) if sum(delays[:j]) < 1.0) >= 3
    assert clock.time() - t0 == pytest.approx(1.0)  # waited exactly until the end time
    assert res.stop_reason == "end time reached"


def test_cancel_keeps_everything_received(tmp_path):
    now = pd.Timestamp.now(tz="UTC").floor("s")
    pts = synthetic_tracks(20, now - pd.Timedelta(hours=1), now - pd.Timedelta(minutes=50),
                           box=BOX, step_s=5, seed=2, first_mmsi=SHIPS)
    frames = to_aisstream_frames(pts)

    async def main():
        # half the stream, then silence: the capture is still running when it is cancelled
        async with ReplayServer(frames, speed=2000, valid_keys={KEY}, outages=[
                Outage("silence", after=len(frames) // 2, seconds=math.inf)]) as srv:
            cap = AisCapture(KEY, fast(srv.url, flush_rows=10**6, flush_interval_s=600,
                                       watchdog_s=600), AisStore(tmp_path))
            async with capture_task(cap) as task:
                await wait_until(lambda: cap.result.positions >= 300, "300 positions",
                                 task=task)
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
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1],
                   timeout=600)


# ----------------------------------------------------------------------------- the API key
PUNCTUATED_KEY = 's2xr/Fuzz+Key&"7f<3a>9c= x'  # every escaping changes it


def disguises(key: str) -> list[str]:
    """The key as servers, URLs and logs write it."""
    return [key, f"'{key}'", json.dumps(key), go_json_escape(key), quote(key, safe=""),
            quote(key, safe="").lower(), quote_plus(key), html.escape(key), key.upper(),
            json.dumps(key, ensure_ascii=True)[1:-1].replace("/", "\\/")]


@pytest.mark.parametrize("key", [PUNCTUATED_KEY, "3f9c1a7be0d24c68a5f1e2b7c9d04a1e6b8f2c3d"],
                         ids=["punctuated", "hex"])
def test_redact_finds_the_key_quoted_escaped_and_url_encoded(tmp_path, key):
    cap = AisCapture(key, fast(closed_port_url()), AisStore(tmp_path))
    for d in disguises(key):
        out = cap.redact(f"Api Key {d} Is Not Valid")
        assert out.startswith("Api Key ") and out.endswith(" Is Not Valid") and "***" in out
        assert not secret_hits(key, tmp_path / "none", out), (d, out)
    untouched = 'PositionReport {"ShipName": "s2xr", "Destination": "x"}'
    assert cap.redact(untouched) == untouched


@pytest.mark.parametrize("key", [PUNCTUATED_KEY, "3f9c1a7be0d24c68a5f1e2b7c9d04a1e6b8f2c3d"],
                         ids=["punctuated", "hex"])
def test_echoed_api_key_is_redacted_from_raw_frames_rows_logs_and_errors(tmp_path, caplog,
                                                                         key):
    """Item 7: a server echoes the key in normal frames (a ship name, a destination, an
    unknown message, garbage, a binary frame) and then in an error frame. The capture stores
    every record, stops with a clear error, and the key — in any of its forms — is in no file
    under the output directory, no log record and no message."""
    caplog.set_level(logging.DEBUG)
    now = pd.Timestamp.now(tz="UTC").floor("s")
    pts = synthetic_tracks(3, now - pd.Timedelta(minutes=30), now - pd.Timedelta(minutes=28),
                           box=BOX, step_s=20, seed=5, first_mmsi=SHIPS)
    valid = to_aisstream_frames(pts)
    exp_pos, exp_static = expected_records(valid)
    frames: list[str | bytes] = []
    echoed = {"position": 0, "static": 0}
    for f in valid:
        d = json.loads(f)
        if d["MessageType"] == "PositionReport" and not echoed["position"]:
            d["MetaData"]["ShipName"] = ECHO_KEY  # the key as a ship name
            echoed["position"] = d["MetaData"]["MMSI"]
        elif d["MessageType"] == "ShipStaticData" and not echoed["static"]:
            d["Message"]["ShipStaticData"].update(Destination=ECHO_KEY_URL,
                                                  CallSign=ECHO_KEY_QUOTED)
            echoed["static"] = d["MetaData"]["MMSI"]
        frames.append(json.dumps(d))
    assert all(echoed.values())
    frames[3:3] = [
        json.dumps({"MessageType": "UnknownMessage", "MetaData": {"MMSI": 235000001},
                    "Message": {"UnknownMessage": {"Text": ECHO_KEY}}}),
        f"<html>bad gateway for key {ECHO_KEY_QUOTED} at /v0/stream?key={ECHO_KEY_URL}",
        json.dumps({"warning": f"quota low for {ECHO_KEY}"}).encode(),
    ]
    frames.append(json.dumps({"error": f"Api Key {ECHO_KEY_QUOTED} is not valid"}))

    async def main():
        async with fuzz_server(frames, valid_keys={key}) as srv:
            cap = AisCapture(key, fast(srv.url, boxes=(AROUND,)),
                             AisStore(tmp_path, xlsx=True, source="t"))
            with pytest.raises(AisError, match="refused the subscription") as err:
                await asyncio.wait_for(cap.run(), WAIT_S)
            cap.close()
            return cap.result, srv.stats, err.value

    res, stats, err = asyncio.run(main())
    assert stats.frames_sent == len(frames) == res.frames
    assert "***" in str(err) and "AISSTREAM_API_KEY" in str(err)
    # every record stored once; the echoed values stored redacted
    idx = pd.read_parquet(tmp_path / INDEX_PATH)
    assert set(zip(idx.mmsi, idx.time, strict=True)) == exp_pos and len(idx) == len(exp_pos)
    static = pd.concat(pd.read_parquet(p) for p in tmp_path.glob("ais/*/ais_static.parquet"))
    assert len(static) == len(exp_static)
    st = static.set_index("mmsi").loc[[echoed["static"]]]
    assert (st.destination == "***").all() and (st.call_sign == "'***'").all()
    assert "***" in set(idx.loc[idx.mmsi == echoed["position"], "ship_name"])
    # the raw log keeps one line per frame, redacted, still valid JSON where it was
    raw = [ln for p in tmp_path.glob("ais/*/aisstream_raw.jsonl")
           for ln in p.read_text(encoding="utf-8").splitlines()]
    assert len(raw) == len(frames)
    assert sum(ln.startswith("{") for ln in raw) == sum(
        (f.decode() if isinstance(f, bytes) else f).startswith("{") for f in frames)
    for ln in raw:
        if ln.startswith("{"):
            json.loads(ln)
    assert list(tmp_path.rglob("*.xlsx"))  # searched as well
    assert secret_hits(key, tmp_path, caplog.text, str(err), res.summary(), repr(res),
                       str(stats)) == []


def test_log_records_never_carry_the_key(tmp_path, caplog):
    """Whatever the websockets library or the capture logs — arguments, messages,
    tracebacks — passes through the redaction while a capture with that key exists."""
    caplog.set_level(logging.DEBUG)
    key = PUNCTUATED_KEY
    cap = AisCapture(key, fast(closed_port_url()), AisStore(tmp_path))
    logging.getLogger("s2xr.ais.capture.ws").debug("failing connection: %s",
                                                  f"close reason {quote(key)}")
    try:
        raise ValueError(f"unexpected {json.dumps(key)}")
    except ValueError:
        logging.getLogger("s2xr.ais.capture").exception("handler failed for %s", key)
    logging.getLogger("s2xr.ais.replay").info("replay saw %s", go_json_escape(key))
    assert "close reason ***" in caplog.text and 'ValueError: unexpected "***"' in caplog.text
    assert "handler failed for ***" in caplog.text and "replay saw ***" in caplog.text
    assert secret_hits(key, tmp_path, caplog.text) == []
    assert cap.redact(key) == "***"


# ----------------------------------------------------------------------------- load
def test_slow_storage_is_not_mistaken_for_a_silent_server(tmp_path, monkeypatch):
    """Item 11: the watchdog counts only the time spent waiting for a frame. Each frame here
    takes longer to store than the watchdog (a busy machine), the server sends one every
    1 s: no watchdog timeout, no reconnection, everything stored."""
    slow_storage(monkeypatch, 0.8)
    now = pd.Timestamp.now(tz="UTC").floor("s")
    pts = synthetic_tracks(1, now - pd.Timedelta(hours=1),
                           now - pd.Timedelta(hours=1) + pd.Timedelta(seconds=40),
                           box=BOX, step_s=10, seed=4, first_mmsi=SHIPS)
    frames = to_aisstream_frames(pts, static=False)
    assert len(frames) == 4

    async def main():
        async with ReplayServer(frames, speed=10, valid_keys={KEY}) as srv:  # 1 s apart
            cap = AisCapture(KEY, fast(srv.url, watchdog_s=0.5, flush_rows=1),
                             AisStore(tmp_path))
            res = await capture_all(srv, cap)
            cap.close()
            return res

    res = asyncio.run(main())
    assert res.watchdog_timeouts == 0 and res.connections == 1 and res.reconnects == 0
    assert res.positions_stored == len(frames)
