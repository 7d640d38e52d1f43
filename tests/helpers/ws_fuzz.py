"""A websocket fuzz server speaking the aisstream protocol, and what tests need to drive an
:class:`~s2xr.ais.capture.AisCapture` against it without depending on the machine's speed.

:class:`FuzzServer` is the replay server (:mod:`s2xr.ais.replay`: subscription checks, key
rejection, silence, disconnects, aborts, extra frames, binary frames, replays after a
reconnect) plus what only a test wants from a server:

* frames may contain :data:`ECHO_KEY` / :data:`ECHO_KEY_URL` / :data:`ECHO_KEY_QUOTED`,
  replaced at send time by the API key the client subscribed with (JSON-escaped as a Go server
  escapes it, URL-encoded, or single-quoted), so a server that echoes the secret in any frame
  can be simulated;
* ``echo_key_on_reject=True`` answers a refused subscription with
  ``{"error": "Api Key '<the key>' Is Not Valid"}``.

Fault helpers: :func:`garbage_frames` (malformed text, truncated JSON, deep nesting, wrong
types, non-UTF-8 binary, ...), :func:`binary` (a valid frame sent as a binary frame),
:func:`oversize` (one frame above the client's size limit), and :class:`Outage` kinds
"silence" (``seconds=math.inf``: until the watchdog makes the client reconnect), "disconnect",
"abort" and "send".

Timing: tests wait for observable events (:func:`wait_until` on server sessions and the
capture's counters, :func:`caught_up`) with generous upper bounds, never for a fixed duration;
:class:`ManualClock` replaces the capture's clock where a test must control time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pandas as pd

from s2xr.ais.capture import AisCapture, CaptureResult, Clock
from s2xr.ais.replay import Outage, ReplayServer, ReplayServerThread

__all__ = ["ECHO_KEY", "ECHO_KEY_QUOTED", "ECHO_KEY_URL", "FuzzServer", "ManualClock", "Outage",
           "binary", "capture_task", "capture_until_caught_up", "caught_up",
           "expected_records", "fuzz_server", "fuzz_server_thread", "garbage_frames",
           "key_forms", "oversize", "secret_hits", "wait_until", "wait_until_sync"]

ECHO_KEY = "@@S2XR-ECHO-KEY@@"  # the key as a Go JSON encoder writes it inside a string
ECHO_KEY_URL = "@@S2XR-ECHO-KEY-URL@@"  # the key URL-encoded (e.g. echoed in a URL)
ECHO_KEY_QUOTED = "@@S2XR-ECHO-KEY-QUOTED@@"  # 'the key', JSON-escaped

CLIENT_MAX_SIZE = 2 ** 22  # what AisCapture accepts per frame
WAIT_S = 120.0  # the upper bound for any wait on an event: generous, never the expected time


def go_json_escape(text: str) -> str:
    """``text`` as Go's encoding/json writes it inside a string (HTML characters escaped)."""
    out = json.dumps(text)[1:-1]
    return out.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def key_forms(key: str) -> list[str]:
    """The forms of ``key`` the fuzz server can echo (for tests grepping for the secret)."""
    return sorted({key, go_json_escape(key), json.dumps(key)[1:-1], quote(key, safe=""),
                   quote(key, safe="").lower(), f"'{key}'"})


class FuzzServer(ReplayServer):
    """A :class:`~s2xr.ais.replay.ReplayServer` that can echo the client's API key (see the
    module docstring). Use :func:`fuzz_server` (async) or :func:`fuzz_server_thread`."""

    def __init__(self, frames: Sequence[str | bytes] | str | Path = (), *,
                 echo_key_on_reject: bool = False, **kwargs: Any) -> None:
        super().__init__(list(frames) if isinstance(frames, tuple) else frames, **kwargs)
        self.echo_key_on_reject = echo_key_on_reject

    def render(self, frame: str | bytes, api_key: str) -> str | bytes:
        marks = {ECHO_KEY: go_json_escape(api_key), ECHO_KEY_URL: quote(api_key, safe=""),
                 ECHO_KEY_QUOTED: go_json_escape(f"'{api_key}'")}
        if isinstance(frame, bytes):
            for mark, value in marks.items():
                frame = frame.replace(mark.encode(), value.encode())
            return frame
        for mark, value in marks.items():
            frame = frame.replace(mark, value)
        return frame

    def rejection(self, message: str, api_key: str | None) -> str:
        if self.echo_key_on_reject and api_key and "Api Key" in message:
            return f"Api Key '{api_key}' Is Not Valid"
        return message


@contextlib.asynccontextmanager
async def fuzz_server(frames: Sequence[str | bytes] = (), **kwargs: Any
                      ) -> AsyncIterator[FuzzServer]:
    """``async with fuzz_server(frames, outages=[...]) as srv:`` — started on 127.0.0.1,
    stopped (every connection closed) on exit, also when the test fails."""
    srv = FuzzServer(frames, **kwargs)
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


@contextlib.contextmanager
def fuzz_server_thread(frames: Sequence[str | bytes] = (), **kwargs: Any):
    """A :class:`FuzzServer` in its own thread (for synchronous code such as the CLI); stopped
    and joined on exit."""
    thread = ReplayServerThread(frames, server_class=FuzzServer, **kwargs)
    thread.start()
    try:
        yield thread
    finally:
        thread.stop()


# ----------------------------------------------------------------------------- frames
def garbage_frames(valid: str) -> dict[str, str | bytes]:
    """Frames a client must count as rejects and survive, by name (``valid``, a position
    frame, is the one to mutilate). None of them holds a record."""
    frame = json.loads(valid)
    mtype = frame["MessageType"]

    def mutated(change: Callable[[dict], Any]) -> str:
        f = json.loads(valid)
        change(f)
        return json.dumps(f).replace('"@@INF@@"', "1e999")

    return {
        "empty": "",
        "whitespace": " \r\n\t ",
        "html": "<html><body>502 Bad Gateway</body></html>",
        "truncated": valid[: len(valid) // 2],
        "truncated_one_byte": valid[:-1],
        "array": "[1, 2, 3]",
        "null": "null",
        "number": "42",
        "string": '"PositionReport"',
        "nested": "[" * 200_000 + "]" * 200_000,  # deeper than any JSON parser recurses
        "nested_object": '{"a":' * 50_000 + "1" + "}" * 50_000,
        "type_is_list": json.dumps({**frame, "MessageType": [mtype]}),
        "type_is_object": json.dumps({**frame, "MessageType": {"x": 1}}),
        "meta_is_string": json.dumps({**frame, "MetaData": "MetaData"}),
        "message_is_number": json.dumps({**frame, "Message": 7}),
        "no_mmsi": mutated(lambda f: f["MetaData"].pop("MMSI")),
        "time_is_list": mutated(lambda f: f["MetaData"].update(time_utc=["not", "a", "time"])),
        "mmsi_overflows": mutated(lambda f: f["MetaData"].update(MMSI="@@INF@@")),
        "nan_position": mutated(lambda f: f["Message"][mtype].update(Latitude=float("nan"))),
        "control_chars": "\x00\x01\x02\x7f",
        "binary_not_utf8": b"\xff\xfe\x00\x80garbage\xc3\x28",
        "binary_truncated_json": valid[: len(valid) // 3].encode(),
    }


def expected_records(frames: Sequence[str]) -> tuple[set, set]:
    """(position keys (mmsi, time), static keys (mmsi, time, type, part)) of valid frames, read
    from the frames' own JSON (static ``part``: the StaticDataReport PartNumber, else None)."""
    pos, st = set(), set()
    for f in frames:
        d = json.loads(f)
        meta, mtype = d["MetaData"], d["MessageType"]
        t = pd.Timestamp(meta["time_utc"].replace(" +0000 UTC", ""), tz="UTC")
        if mtype in ("PositionReport", "StandardClassBPositionReport",
                     "ExtendedClassBPositionReport"):
            pos.add((meta["MMSI"], t))
        else:
            part = d["Message"][mtype].get("PartNumber")
            st.add((meta["MMSI"], t, mtype, part))
    return pos, st


def binary(frame: str) -> bytes:
    """A valid frame sent as a binary websocket frame (as aisstream does): must be stored."""
    return frame.encode("utf-8")


def oversize(n: int = CLIENT_MAX_SIZE + 1024) -> str:
    """One text frame larger than the client accepts (``n`` characters of valid JSON). Send
    it with ``Outage("send", after=k, payload=oversize(), seconds=math.inf)``: the server
    then waits for the client to drop the connection instead of streaming into it."""
    pad = n - len('{"MessageType":"PositionReport","pad":""}')
    return '{"MessageType":"PositionReport","pad":"' + "x" * pad + '"}'


# ----------------------------------------------------------------------------- waiting
async def wait_until(predicate: Callable[[], bool], what: str, *, timeout: float = WAIT_S,
                     task: asyncio.Task | None = None) -> None:
    """Wait until ``predicate()`` holds (checked every 10 ms), at most ``timeout`` seconds;
    fails with ``what`` when it never does, or at once when ``task`` ended (with its error)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if task is not None and task.done():
            task.result()  # raises the capture's error, if any
            raise AssertionError(f"capture ended before: {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f} s: {what}")
        await asyncio.sleep(0.01)


def wait_until_sync(predicate: Callable[[], bool], what: str, *, timeout: float = WAIT_S,
                    stop: threading.Event | None = None) -> None:
    """:func:`wait_until` for a thread (gives up early when ``stop`` is set)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if stop is not None and stop.is_set():
            raise AssertionError(f"stopped before: {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f} s: {what}")
        time.sleep(0.01)


def caught_up(server: ReplayServer, cap: AisCapture) -> bool:
    """Whether the server has sent its whole stream on the latest connection and the capture
    has handled every frame of it (the state in which stopping loses nothing)."""
    sessions = server.stats.sessions
    return bool(sessions) and sessions[-1].exhausted and \
        cap.result.connections == len(sessions) and \
        cap.frames_on_connection == sessions[-1].frames_sent


@contextlib.asynccontextmanager
async def capture_task(cap: AisCapture, *args: Any, **kwargs: Any
                       ) -> AsyncIterator[asyncio.Task[CaptureResult]]:
    """``cap.run(*args, **kwargs)`` as a task that is cancelled (and awaited) on exit unless
    it ended: a failing test never leaves a capture running."""
    task = asyncio.create_task(cap.run(*args, **kwargs))
    try:
        yield task
    finally:
        if not task.done():
            task.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(task, WAIT_S)


async def capture_until_caught_up(server: ReplayServer, cap: AisCapture) -> CaptureResult:
    """Run ``cap`` until it has handled the server's whole stream, then stop it cleanly."""
    async with capture_task(cap) as task:
        await wait_until(lambda: caught_up(server, cap), "the capture caught up with the "
                         "server's stream", task=task)
        cap.request_stop()
        return await asyncio.wait_for(task, WAIT_S)


def secret_hits(key: str, root: Path, *texts: str) -> list[str]:
    """Where ``key`` (in any form :func:`key_forms` lists, any letter case) occurs: files under
    ``root`` (read as bytes, decoded as Latin-1 so nothing is skipped) and ``texts``."""
    forms = [f.lower() for f in key_forms(key)]
    hits = []
    for p in sorted(root.rglob("*")):
        if p.is_file():
            body = p.read_bytes().decode("latin-1").lower()
            hits += [f"{p}: {f!r}" for f in forms if f in body]
    for i, t in enumerate(texts):
        hits += [f"text {i}: {f!r}" for f in forms if f in t.lower()]
    return hits


# ----------------------------------------------------------------------------- clock
class ManualClock(Clock):
    """A capture clock a test controls. Time starts at ``start`` (epoch seconds) and moves only
    by :meth:`set` / :meth:`advance` — or, with ``auto=True``, by every :meth:`sleep` (waits
    take no real time: back-off and schedule waits become instant and exact). ``sleeps``
    records every wait asked for."""

    def __init__(self, start: float | None = None, *, auto: bool = False) -> None:
        self._t = time.time() if start is None else float(start)
        self._lock = threading.Lock()
        self.auto = auto
        self.sleeps: list[float] = []

    def time(self) -> float:
        with self._lock:
            return self._t

    def monotonic(self) -> float:
        return self.time()

    def set(self, t: float) -> None:
        """Move the clock to ``t`` (never backwards)."""
        with self._lock:
            self._t = max(self._t, float(t))

    def advance(self, seconds: float) -> None:
        """Move the clock ``seconds`` forward."""
        with self._lock:
            self._t += max(0.0, seconds)

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if self.auto:
            self.advance(seconds)
            await asyncio.sleep(0)
        else:  # time moves when the test says so: yield a little real time
            await asyncio.sleep(0.01)
