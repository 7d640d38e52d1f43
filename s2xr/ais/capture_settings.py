"""What an AIS capture needs besides the connection: the :class:`Clock` it reads and waits
with, its :class:`CaptureSettings` and the :class:`CaptureResult` it reports."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

import pandas as pd

from s2xr.ais.aisstream import CAPTURE_TYPES, DEFAULT_URL, WORLD, Box
from s2xr.errors import InputError


# ----------------------------------------------------------------------------- clock
class Clock:
    """Where a capture reads the time and how it waits: the system clock (``time.time``,
    ``time.monotonic``) and ``asyncio.sleep``. Tests pass a clock of their own to
    :class:`~s2xr.ais.capture.AisCapture` to control end times, schedule waits, back-off and
    the watchdog."""

    def time(self) -> float:
        """Wall-clock time (seconds since the epoch, UTC)."""
        return time.time()

    def monotonic(self) -> float:
        """Monotonic seconds (durations: watchdog, flush interval, back-off)."""
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds``."""
        await asyncio.sleep(seconds)

    def now(self) -> pd.Timestamp:
        """:meth:`time` as a UTC timestamp."""
        return pd.Timestamp(self.time(), unit="s", tz="UTC")


SYSTEM_CLOCK = Clock()


@dataclass(frozen=True)
class CaptureSettings:
    """How to capture. ``boxes`` are lat/lon boxes (sent latitude first); ``tiles`` restricts
    the per-tile overpass files (None: every tile containing a fix)."""

    url: str = DEFAULT_URL
    boxes: tuple[Box, ...] = (WORLD,)
    mmsi: tuple[str, ...] = ()
    message_types: tuple[str, ...] = CAPTURE_TYPES
    tiles: tuple[str, ...] | None = None
    watchdog_s: float = 120.0
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 300.0
    backoff_factor: float = 2.0
    jitter: float = 0.3
    flush_rows: int = 2000
    flush_interval_s: float = 30.0
    open_timeout_s: float = 10.0
    max_future_s: float = 300.0
    provider: str | None = None
    keep_raw: bool = True  # append every frame to aisstream_raw.jsonl
    store_positions: bool = True  # False: only the random sample (world-wide sampling)

    def __post_init__(self) -> None:
        if self.watchdog_s <= 0 or self.backoff_initial_s < 0 or self.backoff_factor < 1:
            raise InputError("capture: watchdog_s must be > 0, backoff_initial_s ≥ 0 and "
                             "backoff_factor ≥ 1")
        if not 0 <= self.jitter <= 1:
            raise InputError("capture: jitter is a fraction between 0 and 1")
        scheme = urlsplit(self.url).scheme
        if scheme not in ("ws", "wss"):
            raise InputError(f"capture url {self.url!r}: must start with wss:// (or ws:// for "
                             "a local replay server)")

    @property
    def provider_label(self) -> str:
        """'aisstream' for the real service, 'replay' for anything else (unless given)."""
        if self.provider:
            return self.provider
        return "aisstream" if (urlsplit(self.url).hostname or "").endswith("aisstream.io") \
            else "replay"

    @classmethod
    def from_config(cls, ais: Any, **overrides: Any) -> CaptureSettings:
        """Settings from an :class:`~s2xr.config.AisConfig` (fields it lacks keep their
        defaults), then ``overrides`` (None values ignored)."""
        kw: dict[str, Any] = {}
        for name in ("url", "watchdog_s", "backoff_initial_s", "backoff_max_s", "flush_rows",
                     "flush_interval_s"):
            if hasattr(ais, name):
                kw[name] = getattr(ais, name)
        if getattr(ais, "boxes", None):
            kw["boxes"] = tuple(Box(*b) for b in ais.boxes)
        if getattr(ais, "mmsi", None):
            kw["mmsi"] = tuple(str(m) for m in ais.mmsi)
        kw.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**kw)


@dataclass
class CaptureResult:
    """What a capture did. ``skipped``: frames skipped by reason (malformed_json,
    unknown_type, missing_field, bad_mmsi, invalid_position, bad_time, future_time,
    duplicate, ...)."""

    frames: int = 0
    positions: int = 0
    static: int = 0
    positions_stored: int = 0
    static_stored: int = 0
    connections: int = 0
    reconnects: int = 0
    watchdog_timeouts: int = 0
    disconnects: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    stop_reason: str = ""
    started: pd.Timestamp | None = None
    ended: pd.Timestamp | None = None

    def summary(self) -> str:
        """One line for logs and the CLI."""
        skipped = ", ".join(f"{k} {v}" for k, v in self.skipped.items()) or "none"
        return (f"{self.frames} frame(s): {self.positions_stored} position(s) and "
                f"{self.static_stored} static record(s) stored; skipped: {skipped}; "
                f"{self.connections} connection(s), {self.watchdog_timeouts} watchdog "
                f"timeout(s), {self.disconnects} disconnect(s); stopped: {self.stop_reason}")


def with_settings(settings: CaptureSettings, **changes: Any) -> CaptureSettings:
    """A copy of ``settings`` with ``changes`` (None values ignored)."""
    return replace(settings, **{k: v for k, v in changes.items() if v is not None})
