"""aisstream.io websocket capture (``websockets.asyncio.client``).

One :class:`AisCapture` connects, sends the subscription at once (the service wants it within
3 s; boxes latitude first, ``FilterMessageTypes``, optional ``FiltersShipMMSI`` as strings),
and for each frame: appends it to the raw JSONL, validates it (:class:`FrameParser` counts
and skips bad frames and duplicates), buffers positions and static records and flushes them in
batches to :class:`~s2xr.ais.storage.AisStore`. It runs until ``until`` or a stop request.

Failures are expected and survived: a **watchdog** reconnects when no frame arrives for
``watchdog_s`` (aisstream has silent outages), and every lost connection is retried with
**exponential back-off and jitter**. A rejected subscription (``{"error": ...}``, e.g. a
wrong API key) raises :class:`~s2xr.errors.AisError` — after everything received so far is
stored. Cancellation (Ctrl-C, task cancel, :meth:`AisCapture.request_stop`) also flushes first.

The API key is only ever put into the subscription frame: it is not logged (websockets' frame
dumps are filtered out, and every log record of the capture and replay loggers passes through
:class:`~s2xr.ais.redaction.SecretRedactor`), not stored (a frame that echoes it — an error
frame, or any other — is redacted before it is written to ``aisstream_raw.jsonl`` or parsed),
not part of any error message or URL. The redactor also finds the key quoted, JSON-, URL- or
HTML-escaped.

Timing goes through a :class:`~s2xr.ais.capture_settings.Clock` (the system clock by default)
so that tests can control the end time, the back-off and the watchdog's notion of time; the
watchdog counts only the time spent *waiting* for a frame, not the time spent storing the
previous ones (a slow disk or a busy machine is not a silent server). Settings and results:
:mod:`s2xr.ais.capture_settings`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
from collections.abc import Sequence
from typing import Any

import pandas as pd
from pydantic import SecretStr
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from s2xr.ais.aisstream import Box, build_subscription, quiet_websocket_logger
from s2xr.ais.capture_settings import SYSTEM_CLOCK, CaptureResult, CaptureSettings, Clock
from s2xr.ais.frames import FrameParser
from s2xr.ais.redaction import SecretRedactor, protect_logger, redact_in_logs
from s2xr.ais.sampling import DailySampler
from s2xr.ais.storage import AisStore
from s2xr.ais.tracks import static_table
from s2xr.errors import AisError

__all__ = ["AisCapture", "CaptureResult", "CaptureSettings", "Clock", "capture_segments"]

log = logging.getLogger(__name__)

_TICK_S = 0.25  # how often stop requests and the end time are checked

protect_logger(log)
_WS_LOG = protect_logger(quiet_websocket_logger(__name__ + ".ws"))


class _WatchdogExpiredError(Exception):
    pass


class AisCapture:
    """A capture into ``store``; call :meth:`run` (a coroutine) once or several times (e.g.
    once per schedule segment). Duplicate frames are skipped across runs and reconnects."""

    def __init__(self, api_key: SecretStr | str | None, settings: CaptureSettings,
                 store: AisStore, *, sampler: DailySampler | None = None,
                 seed: int | None = None, clock: Clock | None = None) -> None:
        key = api_key.get_secret_value() if isinstance(api_key, SecretStr) else api_key
        if not key:
            raise AisError("no aisstream API key: set AISSTREAM_API_KEY in the environment "
                           "or in a .env file (never in a config file)")
        self._key = SecretStr(key)
        self._redactor = SecretRedactor(key)
        redact_in_logs(self._redactor)  # log records redacted while we live
        self.clock = clock or SYSTEM_CLOCK
        self.settings = settings
        self.store = store
        self.sampler = sampler
        self.parser = FrameParser(provider=settings.provider_label,
                                  max_future_s=settings.max_future_s)
        self.result = CaptureResult()
        self._rng = random.Random(seed)
        self._positions: list[dict[str, Any]] = []
        self._statics: list[dict[str, Any]] = []
        self._static_latest: dict[int, dict[str, Any]] = {}
        self._last_flush = self.clock.monotonic()
        self._stop = False
        self._got = 0  # frames received on the current connection
        self._tiles: tuple[str, ...] | None = settings.tiles

    # ------------------------------------------------------------------ public
    def request_stop(self) -> None:
        """Ask a running capture to stop soon (thread-safe); it flushes and returns."""
        self._stop = True

    def redact(self, text: object) -> str:
        """``text`` with the API key (also quoted, JSON-, URL- or HTML-escaped) replaced by
        ***."""
        return self._redactor(text)

    @property
    def frames_on_connection(self) -> int:
        """Frames received (and handled) on the current connection."""
        return self._got

    def backoff_s(self, attempt: int) -> float:
        """Delay before reconnect attempt ``attempt`` (0 = first): exponential, capped,
        ± ``jitter`` fraction at random."""
        s = self.settings
        base = min(s.backoff_max_s, s.backoff_initial_s * s.backoff_factor ** attempt)
        return max(0.0, base * (1 + s.jitter * self._rng.uniform(-1, 1)))

    async def run(self, until: pd.Timestamp | None = None, *,
                  boxes: Sequence[Box] | None = None,
                  tiles: Sequence[str] | None = None) -> CaptureResult:
        """Capture until ``until`` (UTC) or a stop request; ``boxes`` / ``tiles`` override the
        settings for this run. Returns the (cumulative) :class:`CaptureResult`."""
        s = self.settings
        boxes = tuple(boxes) if boxes else s.boxes
        if tiles is not None:
            self._tiles = tuple(tiles)
        sub = json.dumps(build_subscription(self._key.get_secret_value(), boxes,
                                            mmsi=s.mmsi, message_types=s.message_types))
        end = pd.Timestamp(until).timestamp() if until is not None else math.inf
        url = self.redact(s.url)
        if self.result.started is None:
            self.result.started = pd.Timestamp.now(tz="UTC")
        attempt = 0
        self.result.stop_reason = "running"
        log.info("capturing AIS from %s: %d box(es), types %s%s, until %s", url, len(boxes),
                 ",".join(s.message_types), f", {len(s.mmsi)} MMSI(s)" if s.mmsi else "",
                 until if until is not None else "stopped")
        try:
            while not self._done(end):
                self._got = 0
                try:
                    await self._session(sub, end)
                except AisError:
                    raise
                except _WatchdogExpiredError:
                    self.result.watchdog_timeouts += 1
                    log.warning("no AIS frame for %.1f s: reconnecting", s.watchdog_s)
                except ConnectionClosed as exc:
                    self.result.disconnects += 1
                    rcvd = exc.rcvd  # the close frame the server sent, if any
                    if rcvd is not None and rcvd.code == 1008:  # policy violation: refused
                        raise AisError(f"aisstream closed the connection: "
                                       f"{self.redact(rcvd.reason) or 'policy violation'}"
                                       " (check AISSTREAM_API_KEY and the subscription)"
                                       ) from None
                    log.warning("aisstream connection closed (%s): reconnecting",
                                self.redact(exc))
                except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
                    log.warning("cannot reach %s (%s: %s)", url, type(exc).__name__,
                                self.redact(exc))
                got = self._got
                if self._done(end):
                    break
                if got:  # frames flowed: start the back-off again
                    attempt = 0
                delay = self.backoff_s(attempt)
                attempt += 1
                self.result.reconnects += 1
                log.info("reconnecting in %.2f s (attempt %d)", delay, attempt)
                await self._sleep(delay, end)
            self.result.stop_reason = "stop requested" if self._stop else "end time reached"
        except asyncio.CancelledError:
            self.result.stop_reason = "cancelled"
            raise
        except AisError as exc:
            self.result.stop_reason = f"error: {exc}"
            raise
        except Exception as exc:
            if not self._redactor.found(exc):
                raise
            # never let the key out in an exception message or its traceback
            self.result.stop_reason = f"error: {self.redact(exc)}"
            raise AisError(f"AIS capture failed: {type(exc).__name__}: "
                           f"{self.redact(exc)}") from None
        finally:
            self.flush()
            self.store.raw.close()  # reopened by the next run, if any
            self.result.ended = pd.Timestamp.now(tz="UTC")
            self.result.skipped = self.parser.skipped
            log.info("AIS capture: %s", self.result.summary())
        return self.result

    def flush(self) -> None:
        """Write buffered rows (static first, then positions joined with the latest static
        data of their ships), the raw file and the random sample."""
        pos, st = self._positions, self._statics
        self._positions, self._statics = [], []
        self._last_flush = self.clock.monotonic()
        self.store.raw.flush()
        static = static_table(list(self._static_latest.values())) \
            if self._static_latest and (pos or st) else None
        if st:
            self.result.static_stored += self.store.write_static(st)
        if pos and self.settings.store_positions:
            self.result.positions_stored += self.store.write_positions(
                pos, static=static, tiles=self._tiles)
        if self.sampler is not None and (pos or st):
            self.sampler.write(source=self.store.source, static=static)
        if pos or st:
            log.debug("flushed %d position(s), %d static record(s)", len(pos), len(st))

    def close(self) -> None:
        """Flush and close the raw file."""
        self.flush()
        self.store.close()

    # ------------------------------------------------------------------ internals
    def _done(self, end: float) -> bool:
        return self._stop or self.clock.time() >= end

    async def _sleep(self, seconds: float, end: float) -> None:
        until = self.clock.monotonic() + seconds
        while not self._done(end):
            left = until - self.clock.monotonic()
            if left <= 0:
                return
            await self.clock.sleep(max(0.0, min(left, _TICK_S, end - self.clock.time())))

    async def _session(self, sub: str, end: float) -> None:
        """One connection: subscribe, receive until the end, a stop or the watchdog."""
        s = self.settings
        async with connect(s.url, open_timeout=s.open_timeout_s, logger=_WS_LOG,
                           max_size=2 ** 22, close_timeout=2, ping_interval=20,
                           ping_timeout=20) as ws:
            self.result.connections += 1
            await ws.send(sub)  # at once: aisstream wants it within 3 s
            clock = self.clock
            last = clock.monotonic()  # when we last started waiting for a frame
            while not self._done(end):
                wait = min(_TICK_S, s.watchdog_s - (clock.monotonic() - last),
                           end - clock.time())
                try:
                    async with asyncio.timeout(max(wait, 0.001)):
                        msg = await ws.recv()
                except TimeoutError:
                    if self._done(end):
                        return
                    if clock.monotonic() - last >= s.watchdog_s:
                        raise _WatchdogExpiredError() from None
                    continue
                self._got += 1
                self._handle(msg)
                if len(self._positions) + len(self._statics) >= s.flush_rows or \
                        clock.monotonic() - self._last_flush >= s.flush_interval_s:
                    self.flush()
                # the watchdog counts time spent waiting, not storing (a slow disk or a busy
                # machine must not look like a silent server)
                last = clock.monotonic()

    def _frame_text(self, msg: str | bytes) -> tuple[str, str | bytes]:
        """(text to store, input to parse) for a frame, both without the API key. Binary
        frames are UTF-8 text (aisstream sends JSON in binary frames); bytes that are not
        UTF-8 are stored with replacement characters and parsed as they are (malformed)."""
        parse: str | bytes
        if isinstance(msg, bytes):
            try:
                text = parse = msg.decode("utf-8-sig")
            except UnicodeDecodeError:
                text, parse = msg.decode("utf-8", "replace"), msg
        else:
            text = parse = msg
        if self._redactor.found(text):
            text = parse = self.redact(text)
        return text, parse

    def _handle(self, msg: str | bytes) -> None:
        received = pd.Timestamp.now(tz="UTC")
        self.result.frames += 1
        text, parse = self._frame_text(msg)
        if self.settings.keep_raw:
            self.store.raw.write(text, received)
        try:
            parsed = self.parser.parse(parse, now=received)
        except Exception as exc:  # the parser counts bad frames; this is a last guard
            self.parser.counts["parser_error"] += 1
            log.warning("AIS frame skipped: the parser failed (%s)", type(exc).__name__)
            return
        if parsed is None:
            return
        if parsed.kind == "error":
            raise AisError(f"aisstream refused the subscription: {self.redact(parsed.error)}"
                           " (check AISSTREAM_API_KEY and the bounding boxes)")
        row = parsed.row
        assert row is not None
        if parsed.kind == "position":
            self.result.positions += 1
            self._positions.append(row)
            if self.sampler is not None:
                self.sampler.offer(row)
        else:
            self.result.static += 1
            self._statics.append(row)
            latest = self._static_latest.setdefault(row["mmsi"], {"mmsi": row["mmsi"]})
            for k, v in row.items():
                if v is not None and not (isinstance(v, float) and math.isnan(v)):
                    latest[k] = v


async def capture_segments(capture: AisCapture,
                           segments: Sequence[tuple[pd.Timestamp, pd.Timestamp,
                                                    tuple[str, ...]]],
                           *, boxes_for: Any = None) -> CaptureResult:
    """Run ``capture`` through schedule segments (start, end, tiles): wait for each start,
    subscribe to the tiles' footprint boxes, capture until its end, and return after the last
    one (or a stop request)."""
    from s2xr.ais.aisstream import boxes_for_tiles

    boxes_for = boxes_for or boxes_for_tiles
    for start, end, tiles in segments:
        if capture._stop:
            break
        wait = (pd.Timestamp(start) - capture.clock.now()).total_seconds()
        if wait > 0:
            log.info("next overpass window %s–%s (%s): waiting %.0f s", start, end,
                     ",".join(tiles), wait)
            await capture._sleep(wait, pd.Timestamp(end).timestamp())
        if capture._done(pd.Timestamp(end).timestamp()):
            continue
        log.info("overpass window until %s: tiles %s", end, ",".join(tiles))
        await capture.run(end, boxes=boxes_for(tiles), tiles=tiles)
    capture.result.stop_reason = "stop requested" if capture._stop else "last window ended"
    return capture.result
