"""An aisstream.io replay server on 127.0.0.1 (``websockets.asyncio.server``).

It speaks the real protocol: the client sends a subscription within ``subscription_timeout_s``
(3 s, as aisstream) — ``{"APIKey", "BoundingBoxes": [[[lat, lon], [lat, lon]], ...],
"FiltersShipMMSI"?, "FilterMessageTypes"?}`` — validated as the service does
(:func:`~s2xr.ais.aisstream.validate_subscription`); a bad one is answered with
``{"error": "..."}`` and the connection closed. It then streams recorded (or synthetic) JSONL
frames that match the boxes, types and MMSIs, at real speed (``speed=1``), accelerated
(``speed=60``) or as fast as possible (``speed=None``), and can simulate outages and faults,
each once, when ``n`` frames of the stream have been delivered:

* ``Outage("silence", after=n, seconds=s)`` — stay connected but send nothing for ``s`` s
  (``math.inf``: until the client gives up and reconnects — its watchdog must fire);
* ``Outage("disconnect", after=n)`` — close the connection (code 1012, service restart);
* ``Outage("abort", after=n)`` — drop the TCP connection without a closing handshake;
* ``Outage("send", after=n, payload=..., seconds=s)`` — send one extra frame (text for
  ``str``, binary for ``bytes``), e.g. one larger than the client accepts, then stay silent
  for ``s`` s (``math.inf``: until the client drops the connection and reconnects);
* ``valid_keys={...}`` — any other API key is rejected ("Api Key Is Not Valid").

The stream is one "live" sequence shared by all connections: a client that reconnects gets
what follows the last frame delivered, after ``resend_on_reconnect`` frames sent again (the
real service may repeat frames; clients must deduplicate), or — ``replay_from_start=True`` —
the whole stream again (nothing a dropped connection lost is missing). Frames given as
``bytes`` are sent as binary frames; malformed ones are sent as they are (clients must survive
them). ``stats.sessions`` tells, per accepted subscription, how many frames were sent and
whether the end of the stream was reached: a test waits for those, not for a duration.

Use :class:`ReplayServer` inside an event loop (``async with``), or
:class:`ReplayServerThread` to run it beside synchronous code (e.g. the CLI).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from s2xr.ais.aisstream import (
    Subscription,
    SubscriptionError,
    in_any_box,
    parse_aisstream_time,
    quiet_websocket_logger,
    validate_subscription,
)
from s2xr.ais.redaction import SecretRedactor, protect_logger
from s2xr.errors import ServerError

log = protect_logger(logging.getLogger(__name__))


_WS_LOG = protect_logger(quiet_websocket_logger(__name__ + ".ws"))

OUTAGE_KINDS = ("silence", "disconnect", "abort", "send")


@dataclass(frozen=True)
class Outage:
    """A simulated outage or fault once ``after`` frames have been delivered: "silence"
    (connected, nothing sent for ``seconds``; ``math.inf``: until the client reconnects),
    "disconnect" (the server closes the connection), "abort" (the TCP connection is dropped
    without a closing handshake) or "send" (``payload`` is sent as one extra frame, then
    silence for ``seconds``). A silence also ends when the client closes the connection."""

    kind: str
    after: int
    seconds: float = 0.0
    payload: str | bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in OUTAGE_KINDS:
            raise ValueError(f"Outage kind must be one of {OUTAGE_KINDS}")
        if self.kind == "send" and self.payload is None:
            raise ValueError("Outage('send') needs a payload")


@dataclass
class _Frame:
    text: str | bytes
    mtype: str | None
    mmsi: int | None
    lat: float | None
    lon: float | None
    t: float | None  # seconds (UTC epoch) or None


def _index(text: str | bytes) -> _Frame:
    try:
        f = json.loads(text)
        meta, mtype = f["MetaData"], f["MessageType"]
        if not isinstance(mtype, str):
            raise TypeError("MessageType is not a string")
        t = parse_aisstream_time(meta["time_utc"]).value / 1e9
        return _Frame(text, mtype, int(meta["MMSI"]), float(meta["latitude"]),
                      float(meta["longitude"]), t)
    except Exception:  # malformed (or nested too deep): sent unfiltered, no timing
        return _Frame(text, None, None, None, None, None)


@dataclass
class ReplaySession:
    """One accepted subscription: frames sent on it, whether it reached the end of the stream
    (``exhausted``) and whether it is over (``closed``)."""

    frames_sent: int = 0
    exhausted: bool = False
    closed: bool = False


@dataclass
class ReplayStats:
    """What the server saw: connections, subscriptions (API key left out), frames sent, and
    one :class:`ReplaySession` per accepted subscription."""

    connections: int = 0
    subscriptions: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    frames_sent: int = 0
    delivered: int = 0  # position in the stream
    outages_done: int = 0
    sessions: list[ReplaySession] = field(default_factory=list)


class ReplayServer:
    """Serve ``frames`` (JSON text, one per frame, or a JSONL path) as aisstream does.

    Parameters: ``speed`` (None = as fast as possible, 1 = the frames' own timing, 60 = sixty
    times faster), ``valid_keys`` (None accepts any non-empty key), ``outages``,
    ``resend_on_reconnect``, ``replay_from_start``, ``subscription_timeout_s`` (3 s), ``host``
    (127.0.0.1 only), ``port`` (0 = any free port). ``stats.subscriptions`` records what
    clients asked for (boxes as ``[[lat, lon], [lat, lon]]``, filters) without the API key.

    Subclasses (e.g. a fuzzing server in the tests) may override :meth:`render` (what is sent
    for a frame) and :meth:`rejection` (the error text for a refused subscription).
    """

    def __init__(self, frames: Sequence[str | bytes] | str | Path, *,
                 speed: float | None = None, valid_keys: Iterable[str] | None = None,
                 outages: Sequence[Outage] = (), resend_on_reconnect: int = 0,
                 replay_from_start: bool = False, subscription_timeout_s: float = 3.0,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        if isinstance(frames, str | Path) and not (isinstance(frames, str) and
                                                    frames.lstrip().startswith("{")):
            frames = [ln for ln in Path(frames).read_text(encoding="utf-8").splitlines()
                      if ln.strip()]
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ServerError("the replay server listens on 127.0.0.1 only")
        self.frames = [_index(t) for t in frames]
        self.speed = speed
        self.valid_keys = set(valid_keys) if valid_keys is not None else None
        self.outages = sorted(outages, key=lambda o: o.after)
        self.resend_on_reconnect = resend_on_reconnect
        self.replay_from_start = replay_from_start
        self.subscription_timeout_s = subscription_timeout_s
        self.host, self.port = host, port
        self.stats = ReplayStats()
        self.exhausted = asyncio.Event()
        self._server: Server | None = None
        self._active = 0
        self._pending = list(self.outages)

    @property
    def url(self) -> str:
        """``ws://127.0.0.1:PORT/v0/stream``."""
        return f"ws://{self.host}:{self.port}/v0/stream"

    async def start(self) -> ReplayServer:
        """Start listening (the port is chosen now when 0)."""
        self.exhausted = asyncio.Event()
        self._server = await serve(self._handle, self.host, self.port, logger=_WS_LOG,
                                   ping_interval=None, max_size=2 ** 20)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("aisstream replay server at %s (%d frames)", self.url, len(self.frames))
        return self

    async def stop(self) -> None:
        """Close every connection and stop listening."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
            log.info("aisstream replay server at %s stopped", self.url)

    async def __aenter__(self) -> ReplayServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def render(self, frame: str | bytes, api_key: str) -> str | bytes:
        """What is sent for a stream frame (subclasses may change it; the default sends the
        frame as it is: text as a text frame, bytes as a binary frame)."""
        return frame

    def rejection(self, message: str, api_key: str | None) -> str:
        """The error text sent for a refused subscription (aisstream's own wording)."""
        return message

    async def _reject(self, ws: ServerConnection, message: str, api_key: str | None = None
                      ) -> None:
        text = self.rejection(message, api_key)
        # the key a client sent never goes into the server's log or stats
        if api_key and len(api_key) <= 1024:
            safe = SecretRedactor(api_key)(text)
        else:  # a key too long to search for in all its forms
            safe = text.replace(api_key, "***") if api_key else text
        self.stats.rejected.append(safe)
        log.info("replay: subscription refused: %s", safe)
        try:
            await ws.send(json.dumps({"error": text}))
            await ws.close(1008, safe.encode()[:120].decode("utf-8", "ignore"))  # ≤ 123 B
        except ConnectionClosed:
            pass

    async def _handle(self, ws: ServerConnection) -> None:
        self.stats.connections += 1
        try:
            first = await asyncio.wait_for(ws.recv(), self.subscription_timeout_s)
        except TimeoutError:
            await self._reject(ws, "Subscription Not Received Within 3 Seconds")
            return
        except ConnectionClosed:
            return
        key: str | None = None
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            key = json.loads(first).get("APIKey")
        key = key if isinstance(key, str) and key else None
        try:
            sub = validate_subscription(first, valid_keys=self.valid_keys)
        except SubscriptionError as exc:
            await self._reject(ws, str(exc), key)
            return
        assert key is not None  # validated
        raw = json.loads(first)
        self.stats.subscriptions.append({k: v for k, v in raw.items() if k != "APIKey"})
        session = ReplaySession()
        self.stats.sessions.append(session)
        self._active += 1
        me = self._active
        if self.replay_from_start:
            self.stats.delivered = 0
        elif self.stats.connections > 1 and self.resend_on_reconnect:
            self.stats.delivered = max(0, self.stats.delivered - self.resend_on_reconnect)
        try:
            with contextlib.suppress(ConnectionClosed):
                await self._stream(ws, sub, me, key, session)
        finally:
            session.closed = True

    def _wanted(self, f: _Frame, sub: Subscription) -> bool:
        if f.mtype is None or f.lat is None or f.lon is None:
            return True  # malformed: the wire delivers it anyway
        if sub.message_types and f.mtype not in sub.message_types:
            return False
        if sub.mmsi and f.mmsi not in sub.mmsi:
            return False
        return bool(in_any_box(sub.boxes, f.lat, f.lon))

    async def _stream(self, ws: ServerConnection, sub: Subscription, me: int, key: str,
                      session: ReplaySession) -> None:
        ref: tuple[float, float] | None = None  # (stream time, loop time) at start
        while self._active == me:
            pos = self.stats.delivered
            if self._pending and self._pending[0].after <= pos:
                out = self._pending.pop(0)
                self.stats.outages_done += 1
                if out.kind == "disconnect":
                    log.info("replay: forced disconnect after %d frames", pos)
                    await ws.close(1012, "service restart")
                    return
                if out.kind == "abort":
                    log.info("replay: connection dropped after %d frames", pos)
                    ws.transport.abort()
                    return
                if out.kind == "send":
                    assert out.payload is not None
                    log.info("replay: extra frame of %d bytes after %d frames",
                             len(out.payload), pos)
                    await ws.send(out.payload)
                    if not out.seconds:
                        continue
                log.info("replay: silent for %s s after %d frames",
                         "ever" if math.isinf(out.seconds) else f"{out.seconds:.1f}", pos)
                loop = asyncio.get_running_loop()
                until = loop.time() + out.seconds
                while loop.time() < until and self._active == me and \
                        ws.state is State.OPEN:
                    await asyncio.sleep(min(0.05, max(until - loop.time(), 0)))
                ref = None
                continue
            if pos >= len(self.frames):
                session.exhausted = True
                self.exhausted.set()
                if ws.state is not State.OPEN:
                    return
                await asyncio.sleep(0.05)  # stay connected, silent, like an empty sea
                continue
            f = self.frames[pos]
            if self.speed and f.t is not None:  # the stream's clock runs for every frame
                loop = asyncio.get_running_loop()
                if ref is None:
                    ref = (f.t, loop.time())
                due = ref[1] + (f.t - ref[0]) / self.speed
                if due > loop.time():
                    await asyncio.sleep(due - loop.time())
            if not self._wanted(f, sub):
                self.stats.delivered = pos + 1
                continue
            if self._active != me:
                return
            await ws.send(self.render(f.text, key))
            self.stats.frames_sent += 1
            session.frames_sent += 1
            self.stats.delivered = pos + 1
            if self.stats.frames_sent % 256 == 0:
                await asyncio.sleep(0)  # let other connections and the client run


class ReplayServerThread:
    """A :class:`ReplayServer` running in its own thread and event loop, for synchronous
    callers: ``with ReplayServerThread(frames, ...) as srv: run_cli(srv.url)``."""

    def __init__(self, frames: Sequence[str | bytes] | str | Path, *,
                 server_class: type[ReplayServer] | None = None, **kwargs: Any) -> None:
        self._args = (frames, kwargs)
        self._class = server_class or ReplayServer
        self.server: ReplayServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        """The server's ws:// URL."""
        assert self.server is not None
        return self.server.url

    @property
    def stats(self) -> ReplayStats:
        """The server's :class:`ReplayStats` (read after :meth:`stop` for a stable view)."""
        assert self.server is not None
        return self.server.stats

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            self.server = self._class(self._args[0], **self._args[1])
            loop.run_until_complete(self.server.start())
        except BaseException as exc:  # reported to the starting thread
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self.server.stop())
            loop.close()

    def start(self) -> ReplayServerThread:
        """Start the thread; returns once the server listens."""
        self._thread = threading.Thread(target=self._run, name="ais-replay", daemon=True)
        self._thread.start()
        if not self._ready.wait(10) or self._error is not None:
            raise ServerError(f"AIS replay server did not start: {self._error!r}")
        return self

    def stop(self) -> None:
        """Stop the server and join the thread."""
        if self._loop is not None and self._thread is not None:
            if self._thread.is_alive():
                with contextlib.suppress(RuntimeError):  # the loop already closed
                    self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(60)
            if self._thread.is_alive():
                raise ServerError("AIS replay server thread did not stop within 60 s")
            self._thread = None

    def __enter__(self) -> ReplayServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
