"""The capture against a fuzzing aisstream server (``tests/helpers/ws_fuzz.py``).

For each fault — garbage and truncated JSON, binary frames, an oversize frame, an abrupt close,
a forced disconnect, a silence that only the watchdog ends, a server echoing the API key, a
rejected key, and all of them at once — the capture must not crash, must store every valid
record exactly once, count every malformed frame as a reject, end cleanly when stopped or
cancelled, and never write the key anywhere. No test waits for a duration: they wait for the
server's sessions and the capture's counters.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from pathlib import Path

import pandas as pd
import pytest
from helpers.ws_fuzz import (
    ECHO_KEY,
    ECHO_KEY_QUOTED,
    ECHO_KEY_URL,
    WAIT_S,
    Outage,
    binary,
    capture_task,
    capture_until_caught_up,
    expected_records,
    fuzz_server,
    garbage_frames,
    oversize,
    secret_hits,
    wait_until,
)

from s2xr.ais.aisstream import Box
from s2xr.ais.capture import AisCapture, CaptureResult, CaptureSettings
from s2xr.ais.storage import INDEX_PATH, RAW_NAME, AisStore
from s2xr.ais.synthetic import synthetic_tracks, to_aisstream_frames
from s2xr.errors import AisError

KEY = 's2xr-FUZZ/key+3c1d&0e"x'  # punctuation: JSON, URL and HTML escaping all change it
BOX = Box(35.3, -6.2, 36.0, -5.3)
AROUND = Box(34.5, -7.5, 37.0, -4.0)
REJECT_REASONS = {"malformed_json", "not_an_object", "unknown_type", "missing_field",
                  "bad_mmsi", "invalid_position", "bad_time", "future_time", "other_type",
                  "parser_error"}


def settings(url: str, **kw) -> CaptureSettings:
    """Fast back-off; a watchdog long enough never to fire on a busy machine (tests of a
    silence shorten it: the silence lasts until it fires, whatever its value)."""
    base = dict(url=url, boxes=(AROUND,), watchdog_s=10, backoff_initial_s=0.01,
                backoff_max_s=0.05, flush_rows=40, flush_interval_s=3600)
    return CaptureSettings(**{**base, **kw})


def valid_frames(seed: int = 11) -> list[str]:
    now = pd.Timestamp.now(tz="UTC").floor("s")
    pts = synthetic_tracks(6, now - pd.Timedelta(minutes=40), now - pd.Timedelta(minutes=35),
                           box=BOX, step_s=15, seed=seed, first_mmsi=235_000_001)
    return to_aisstream_frames(pts)


def first_position(frames: list[str]) -> str:
    return next(f for f in frames if json.loads(f)["MessageType"] == "PositionReport")


def interleave(valid: list[str], extra: list[str | bytes], every: int = 7
               ) -> list[str | bytes]:
    """``extra`` frames spread through ``valid`` (one after every ``every`` valid frames)."""
    out: list[str | bytes] = []
    pending = list(extra)
    for i, f in enumerate(valid):
        out.append(f)
        if pending and i % every == every - 1:
            out.append(pending.pop(0))
    return out + pending


def echo_frames(valid: list[str]) -> list[str | bytes]:
    """Frames (none of them a record) echoing the key in every way the server can."""
    meta = json.loads(first_position(valid))["MetaData"]
    meta = {"MMSI": meta["MMSI"], "ShipName": ECHO_KEY}  # no time: the server sends it
    return [
        json.dumps({"MessageType": "UnknownMessage", "MetaData": meta,
                    "Message": {"UnknownMessage": {"Text": ECHO_KEY}}}),
        f"upstream error: key {ECHO_KEY_QUOTED} rejected at ?key={ECHO_KEY_URL}",
        json.dumps({"notice": f"rate limited: {ECHO_KEY}"}).encode(),
    ]


def assert_stored_once(root: Path, frames: list[str]) -> None:
    """Every record of ``frames`` in the index and the static files exactly once, nothing
    else; per-tile files without duplicates."""
    exp_pos, exp_static = expected_records(frames)
    idx = pd.read_parquet(root / INDEX_PATH)
    assert len(idx) == len(exp_pos) and set(zip(idx.mmsi, idx.time, strict=True)) == exp_pos
    static = pd.concat(pd.read_parquet(p) for p in root.glob("ais/*/ais_static.parquet"))
    got = {(m, t, mt, {"A": False, "B": True}.get(p)) for m, t, mt, p in
           zip(static.mmsi, static.time, static.message_type, static.part, strict=True)}
    assert len(static) == len(exp_static) and got == exp_static
    for p in root.glob("ais/*/ais_*.parquet"):
        if "random_sample" not in p.name:
            df = pd.read_parquet(p)
            key = ["mmsi", "time"] + (["message_type", "part"] if "static" in p.name else [])
            assert not df.duplicated(key).any(), p


def rejects(res: CaptureResult) -> int:
    assert set(res.skipped) - {"duplicate"} <= REJECT_REASONS, res.skipped
    return sum(v for k, v in res.skipped.items() if k != "duplicate")


def raw_lines(root: Path) -> int:
    return sum(len(p.read_text(encoding="utf-8").splitlines())
               for p in root.glob(f"ais/*/{RAW_NAME}"))


def run_capture(frames: list[str | bytes], root: Path, *, server: dict | None = None,
                **kw) -> tuple[CaptureResult, object]:
    """Capture ``frames`` from a fuzz server until it is all handled; stop; close."""
    async def main():
        async with fuzz_server(frames, valid_keys={KEY}, **(server or {})) as srv:
            cap = AisCapture(KEY, settings(srv.url, **kw), AisStore(root, xlsx=True))
            try:
                res = await capture_until_caught_up(srv, cap)
            finally:
                cap.close()
            return res, srv.stats

    return asyncio.run(main())


# ----------------------------------------------------------------------------- one fault each
def test_garbage_truncated_and_malformed_frames_are_counted_never_stored(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    valid = valid_frames()
    garbage = garbage_frames(first_position(valid))
    frames = interleave(valid, list(garbage.values()), every=3)
    res, stats = run_capture(frames, tmp_path)
    assert res.stop_reason == "stop requested" and res.connections == 1
    assert res.frames == len(frames) == stats.frames_sent
    assert rejects(res) == len(garbage)  # each malformed frame counted once as a reject
    assert "duplicate" not in res.skipped
    assert_stored_once(tmp_path, valid)
    assert raw_lines(tmp_path) == len(frames)  # one raw line per frame, garbage included
    assert secret_hits(KEY, tmp_path, caplog.text) == []


def test_binary_frames_are_stored_like_text_frames(tmp_path):
    """aisstream sends JSON in binary frames: stored; binary garbage: rejected."""
    valid = valid_frames()
    frames: list[str | bytes] = [binary(f) if i % 2 else f for i, f in enumerate(valid)]
    frames = interleave(frames, [b"\xff\xfe\x00garbage", b"", binary("[]"),
                                 "\ufeff" + valid[0]], every=5)
    res, _ = run_capture(frames, tmp_path)
    assert rejects(res) == 4 and res.connections == 1
    assert_stored_once(tmp_path, valid)
    assert raw_lines(tmp_path) == len(frames)


def test_text_that_breaks_lines_or_utf8_is_stored_on_one_line(tmp_path):
    """A ship name with a line separator (U+2028) or a lone surrogate escape ("\\ud800") is a
    valid frame: the record is stored (surrogate replaced), the raw log keeps one line per
    frame."""
    valid = valid_frames()
    frames = []
    names = iter(["NAME\u2028NEXT\x85LINE", "BAD \ud800 NAME"])
    done = 0
    for f in valid:
        d = json.loads(f)
        if d["MessageType"] == "PositionReport" and done < 2:
            d["MetaData"]["ShipName"] = next(names)
            f = json.dumps(d, ensure_ascii=done == 1)
            done += 1
        frames.append(f)
    res, _ = run_capture(frames, tmp_path)
    assert res.stop_reason == "stop requested" and rejects(res) == 0
    assert_stored_once(tmp_path, valid)
    assert raw_lines(tmp_path) == len(frames)
    idx = pd.read_parquet(tmp_path / INDEX_PATH)
    assert "BAD \ufffd NAME" in set(idx.ship_name.dropna())


@pytest.mark.parametrize("fault", ["oversize", "abort", "disconnect"])
def test_connection_faults_mid_stream_lose_nothing(tmp_path, caplog, fault):
    """An oversize frame (the client drops the connection), an abrupt close without a
    closing handshake, a forced disconnect: the capture reconnects and, as the server sends
    its stream again, stores every record exactly once."""
    caplog.set_level(logging.DEBUG)
    valid = valid_frames()
    half = len(valid) // 2
    outage = {"oversize": Outage("send", after=half, payload=oversize(), seconds=math.inf),
              "abort": Outage("abort", after=half),
              "disconnect": Outage("disconnect", after=half)}[fault]
    res, stats = run_capture(valid, tmp_path,
                             server={"outages": [outage], "replay_from_start": True})
    assert stats.outages_done == 1 and len(stats.sessions) >= 2
    assert res.connections >= 2 and res.disconnects >= 1 and res.stop_reason == \
        "stop requested"
    # the frames sent again were recognised; an abort may lose what was still buffered
    dup = res.skipped.get("duplicate", 0)
    assert rejects(res) == 0 and res.frames == len(valid) + dup
    assert dup == half if fault != "abort" else dup <= half
    assert_stored_once(tmp_path, valid)
    assert secret_hits(KEY, tmp_path, caplog.text) == []


def test_silence_is_ended_by_the_watchdog(tmp_path):
    """The server goes silent for good mid-stream: only the watchdog can get the rest."""
    valid = valid_frames()
    res, stats = run_capture(valid, tmp_path, watchdog_s=0.3, server={"outages": [
        Outage("silence", after=len(valid) // 2, seconds=math.inf)]})
    assert res.watchdog_timeouts >= 1 and res.connections >= 2 and len(stats.sessions) >= 2
    assert rejects(res) == 0
    assert_stored_once(tmp_path, valid)


def test_echoed_key_in_frames_never_reaches_disk(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    valid = valid_frames()
    frames = interleave(valid, echo_frames(valid))
    res, stats = run_capture(frames, tmp_path)
    assert rejects(res) == 3
    assert_stored_once(tmp_path, valid)
    assert raw_lines(tmp_path) == len(frames)
    assert secret_hits(KEY, tmp_path, caplog.text, res.summary(), str(stats)) == []


def test_rejected_key_echoed_by_the_server_is_a_clear_error_without_the_key(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)

    async def main():
        async with fuzz_server(valid_frames(), valid_keys={"another-key"},
                               echo_key_on_reject=True) as srv:
            cap = AisCapture(KEY, settings(srv.url), AisStore(tmp_path))
            with pytest.raises(AisError, match="Api Key") as err:
                await asyncio.wait_for(cap.run(), WAIT_S)
            cap.close()
            return cap.result, srv.stats, err.value

    res, stats, err = asyncio.run(main())
    assert len(stats.rejected) == 1 and stats.sessions == [] and res.connections == 1
    assert "***" in str(err) and res.stop_reason.startswith("error:")
    assert raw_lines(tmp_path) == 1  # the error frame, redacted
    assert secret_hits(KEY, tmp_path, caplog.text, str(err), res.summary(), str(stats)) == []


# ----------------------------------------------------------------------------- all at once
def storm(valid: list[str]) -> tuple[list[str | bytes], list[Outage]]:
    """Garbage, echoed keys and binary frames spread through the stream, and every
    connection fault, one after another."""
    garbage = list(garbage_frames(first_position(valid)).values())
    frames = interleave([binary(f) if i % 3 == 0 else f for i, f in enumerate(valid)],
                        garbage + echo_frames(valid), every=2)
    n = len(frames)
    outages = [Outage("send", after=n // 6, payload=oversize(), seconds=math.inf),
               Outage("abort", after=2 * n // 6),
               Outage("silence", after=3 * n // 6, seconds=math.inf),
               Outage("disconnect", after=4 * n // 6),
               Outage("silence", after=5 * n // 6, seconds=0.05)]
    return frames, outages


def test_every_fault_at_once(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    valid = valid_frames(seed=12)
    frames, outages = storm(valid)
    res, stats = run_capture(frames, tmp_path, watchdog_s=0.3,
                             server={"outages": outages, "replay_from_start": True})
    assert stats.outages_done == len(outages) and len(stats.sessions) >= 5
    assert res.watchdog_timeouts >= 1 and res.disconnects >= 3
    assert res.stop_reason == "stop requested"
    n_bad = len(frames) - len(valid)
    assert rejects(res) >= n_bad  # every delivery of a malformed frame is a reject
    assert_stored_once(tmp_path, valid)
    assert raw_lines(tmp_path) == res.frames
    assert secret_hits(KEY, tmp_path, caplog.text, res.summary(), str(stats)) == []


@pytest.mark.parametrize("moment", ["streaming", "silent", "reconnecting"])
def test_cancel_ends_cleanly_whatever_the_fault(tmp_path, caplog, moment):
    """Cancelled (Ctrl-C) while frames and garbage stream in, while the server is silent, or
    while waiting to reconnect to a server that is gone: the task ends at once with
    "cancelled", everything handled is stored, the raw file is closed, the key nowhere."""
    caplog.set_level(logging.DEBUG)
    valid = valid_frames()
    frames = interleave(valid, list(garbage_frames(first_position(valid)).values()), every=3)
    half = len(frames) // 2
    outages = {"streaming": [], "reconnecting": [],
               "silent": [Outage("silence", after=half, seconds=math.inf)]}[moment]

    async def main():
        srv_cm = fuzz_server(frames, valid_keys={KEY}, speed=None, outages=outages)
        srv = await srv_cm.__aenter__()
        stopped = False
        try:
            # a long watchdog and back-off: only the cancel can end the capture
            cap = AisCapture(KEY, settings(srv.url, watchdog_s=600, backoff_initial_s=600,
                                           backoff_max_s=600, flush_rows=10 ** 6),
                             AisStore(tmp_path))
            async with capture_task(cap) as task:
                if moment == "streaming":
                    await wait_until(lambda: cap.result.frames >= half, "half the frames",
                                     task=task)
                elif moment == "silent":
                    await wait_until(lambda: srv.stats.outages_done == 1 and
                                     cap.frames_on_connection == srv.stats.frames_sent,
                                     "the server silent, every frame handled", task=task)
                else:
                    await wait_until(lambda: cap.result.frames >= half, "half the frames",
                                     task=task)
                    await srv_cm.__aexit__(None, None, None)  # the server goes away
                    stopped = True
                    await wait_until(lambda: cap.result.reconnects >= 1, "a reconnect wait",
                                     task=task)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await asyncio.wait_for(task, WAIT_S)
            return cap, srv.stats
        finally:
            if not stopped:
                await srv_cm.__aexit__(None, None, None)

    cap, stats = asyncio.run(main())
    res = cap.result
    assert res.stop_reason == "cancelled" and res.ended is not None
    assert cap.store.raw._fh is None  # closed
    assert raw_lines(tmp_path) == res.frames
    idx = pd.read_parquet(tmp_path / INDEX_PATH)
    assert len(idx) == res.positions == res.positions_stored > 0  # nothing buffered lost
    assert secret_hits(KEY, tmp_path, caplog.text, res.summary(), str(stats)) == []
