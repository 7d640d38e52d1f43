"""An aisstream.io replay server on 127.0.0.1 (``websockets.asyncio.server``).

It speaks the real protocol: the client sends a subscription within ``subscription_timeout_s``
(3 s, as aisstream) — ``{"APIKey", "BoundingBoxes": [[[lat, lon], [lat, lon]], ...],
"FiltersShipMMSI"?, "FilterMessageTypes"?}`` — validated as the service does
(:func:`~s2xr.ais.aisstream.validate_subscription`); a bad one is answered with
``{"error": "..."}`` and the connection closed. It then streams recorded (or synthetic) JSONL
frames that match the boxes, types and MMSIs, at real speed (``speed=1``), accelerated
(``speed=60``) or as fast as possible (``speed=None``), and can simulate outages:

* ``Outage("silence", after=n, seconds=s)`` — stay connected but send nothing for ``s`` s
  once ``n`` frames of the stream have been delivered;
* ``Outage("disconnect", after=n)`` — close the connection (code 1012, service restart);
* ``valid_keys={...}`` — any other API key is rejected ("Api Key Is Not Valid").

The stream is one "live" sequence shared by all connections: a client that reconnects gets
what follows the last frame delivered, after ``resend_on_reconnect`` frames sent again (the
real service may repeat frames; clients must deduplicate). Malformed lines in the input are
sent as they are (clients must survive them).

Use :class:`ReplayServer` inside an event loop (``async with``), or
:class:`ReplayServerThread` to run it beside synchronous code (e.g. the CLI).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
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
from s2xr.errors import ServerError

log = logging.getLogger(__name__)


_WS_LOG = quiet_websocket_logger(__name__ + ".ws")


@dataclass(frozen=True)
class Outage:
    """A simulated outage once ``after`` frames have been delivered: "silence" (connected,
    nothing sent for ``seconds``) or "disconnect" (the server closes the connection)."""

    kind: str
    after: int
    seconds: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in ("silence", "disconnect"):
            raise ValueError("Outage kind must be 'silence' or 'disconnect'")


@dataclass
class _Frame:
    text: str
    mtype: str | None
    mmsi: int | None
    lat: float | None
    lon: float | None
    t: float | None  # seconds (UTC epoch) or None


def _index(text: str) -> _Frame:
    try:
        f = json.loads(text)
        meta = f["MetaData"]
        t = parse_aisstream_time(meta["time_utc"]).value / 1e9
        return _Frame(text, f.get("MessageType"), int(meta["MMSI"]),
                      float(meta["latitude"]), float(meta["longitude"]), t)
    except Exception:  # malformed: sent unfiltered, no timing
        return _Frame(text, None, None, None, None, None)


@dataclass
class ReplayStats:
    """What the server saw: connections, subscriptions (API key left out), frames sent."""

    connections: int = 0
    subscriptions: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    frames_sent: int = 0
    delivered: int = 0  # position in the stream
    outages_done: int = 0


class ReplayServer:
    """Serve ``frames`` (JSON text, one per frame, or a JSONL path) as aisstream does.

    Parameters: ``speed`` (None = as fast as possible, 1 = the frames' own timing, 60 = sixty
    times faster), ``valid_keys`` (None accepts any non-empty key), ``outages``,
    ``resend_on_reconnect``, ``subscription_timeout_s`` (3 s), ``host`` (127.0.0.1 only),
    ``port`` (0 = any free port). ``stats.subscriptions`` records what clients asked for
    (boxes as ``[[lat, lon], [lat, lon]]``, filters) without the API key.
    """

    def __init__(self, frames: Sequence[str] | str | Path, *, speed: float | None = None,
                 valid_keys: Iterable[str] | None = None, outages: Sequence[Outage] = (),
                 resend_on_reconnect: int = 0, subscription_timeout_s: float = 3.0,
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

    async def _reject(self, ws: ServerConnection, message: str) -> None:
        self.stats.rejected.append(message)
        log.info("replay: subscription refused: %s", message)
        try:
            await ws.send(json.dumps({"error": message}))
            await ws.close(1008, message[:100])
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
        try:
            sub = validate_subscription(first, valid_keys=self.valid_keys)
        except SubscriptionError as exc:
            await self._reject(ws, str(exc))
            return
        raw = json.loads(first)
        self.stats.subscriptions.append({k: v for k, v in raw.items() if k != "APIKey"})
        self._active += 1
        me = self._active
        if self.stats.connections > 1 and self.resend_on_reconnect:
            self.stats.delivered = max(0, self.stats.delivered - self.resend_on_reconnect)
        with contextlib.suppress(ConnectionClosed):
            await self._stream(ws, sub, me)

    def _wanted(self, f: _Frame, sub: Subscription) -> bool:
        if f.mtype is None:
            return True  # malformed: the wire delivers it anyway
        if sub.message_types and f.mtype not in sub.message_types:
            return False
        if sub.mmsi and f.mmsi not in sub.mmsi:
            return False
        return bool(in_any_box(sub.boxes, f.lat, f.lon))

    async def _stream(self, ws: ServerConnection, sub: Subscription, me: int) -> None:
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
                log.info("replay: silent for %.1f s after %d frames", out.seconds, pos)
                loop = asyncio.get_running_loop()
                until = loop.time() + out.seconds
                while loop.time() < until and self._active == me and \
                        ws.state is State.OPEN:
                    await asyncio.sleep(min(0.05, max(until - loop.time(), 0)))
                ref = None
                continue
            if pos >= len(self.frames):
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
            await ws.send(f.text)
            self.stats.frames_sent += 1
            self.stats.delivered = pos + 1
            if self.stats.frames_sent % 256 == 0:
                await asyncio.sleep(0)  # let other connections and the client run


class ReplayServerThread:
    """A :class:`ReplayServer` running in its own thread and event loop, for synchronous
    callers: ``with ReplayServerThread(frames, ...) as srv: run_cli(srv.url)``."""

    def __init__(self, frames: Sequence[str] | str | Path, **kwargs: Any) -> None:
        self._args = (frames, kwargs)
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
            self.server = ReplayServer(self._args[0], **self._args[1])
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
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._thread = None

    def __enter__(self) -> ReplayServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
