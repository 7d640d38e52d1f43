"""What a run is told and what it reports: :class:`RunOptions`, :class:`RunControl` (progress
and stop, shared by the CLI and the dashboard) and :class:`RunResult`."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from pipelines.chip_job import ChipJobResult

log = logging.getLogger("pipelines.run_job")

STAGES = ("idle", "world", "predict", "collect", "lag", "chip", "done", "stopped", "failed")


@dataclass(frozen=True)
class RunOptions:
    """What a run does beyond the config (the CLI flags and the dashboard's controls).

    ``max_ships``: at most this many vessels (the lowest MMSIs, deterministic);
    ``max_chips``: at most this many new chips; ``bind_chips_to_ships``: one chip per ship
    (its scene nearest in time), so ``max_chips`` = ``max_ships``; ``restrict_to_schedule``:
    capture only the schedule tiles' boxes during their windows; ``dry_run_ais``: skip the
    capture and use the embedded world's synthetic AIS directly (embedded world only);
    ``days``: prediction horizon (default ``planning.prediction_days``); ``tiles``: plan
    these tiles instead of ``planning.tiles``; ``capture_ahead_min``: on real services a
    batch captures the windows starting within this many minutes (and those that follow them
    within as many minutes); later windows are left ``planned`` for a later batch, so keep
    it at least the interval between batches (cron, ``--continuous``)."""

    max_ships: int | None = None
    max_chips: int | None = None
    bind_chips_to_ships: bool = False
    include_swir: bool | None = None
    restrict_to_schedule: bool = True
    dry_run_ais: bool = False
    scheduler: str | None = None
    days: int | None = None
    start: pd.Timestamp | None = None
    tiles: tuple[str, ...] | None = None
    capture_ahead_min: float = 30.0


class RunControl:
    """Thread-safe status of a run and its stop switch.

    ``snapshot()`` → dict(stage, message, done, total, stop_requested, updated); listeners
    added with :meth:`subscribe` are called on every change (from the run's thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.stop_event = threading.Event()
        self._state: dict[str, Any] = {"stage": "idle", "message": "", "done": 0, "total": 0,
                                       "updated": time.time()}
        self._listeners: list[Callable[[dict[str, Any]], None]] = []

    def subscribe(self, fn: Callable[[dict[str, Any]], None]) -> None:
        with self._lock:
            self._listeners.append(fn)

    def _update(self, **kw: Any) -> None:
        with self._lock:
            self._state.update(kw, updated=time.time())
            snap = dict(self._state, stop_requested=self.stop_event.is_set())
            listeners = list(self._listeners)
        for fn in listeners:
            fn(snap)

    def set_stage(self, stage: str, message: str = "") -> None:
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}")
        log.info("stage %s%s", stage, f": {message}" if message else "")
        self._update(stage=stage, message=message, done=0, total=0)

    def progress(self, done: int, total: int) -> None:
        self._update(done=int(done), total=int(total))

    def request_stop(self) -> None:
        self.stop_event.set()
        self._update()

    @property
    def stopped(self) -> bool:
        return self.stop_event.is_set()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._state, stop_requested=self.stop_event.is_set())


#: exit status of a run that finished but missed capture windows (see RunResult.exit_code)
EXIT_MISSED = 3


@dataclass
class RunResult:
    """What a run did, stage by stage. Window counts are this run's: ``captured`` (AIS
    stored during the window), ``missed`` (its AIS is lost; ``missed_reasons`` says why,
    reason → count), ``later`` (still ``planned``: beyond the capture look-ahead),
    ``queued`` (captured, L2A not out yet), ``chipped``."""

    root: Path
    run_id: str = ""
    embedded: bool = False
    schedule_path: Path | None = None
    n_windows: int = 0
    n_windows_captured: int = 0
    n_windows_missed: int = 0
    n_windows_later: int = 0
    n_windows_queued: int = 0
    n_windows_chipped: int = 0
    missed_reasons: dict[str, int] = field(default_factory=dict)
    ais_points: int = 0
    ais_provider: str = ""
    chip: ChipJobResult | None = None
    stopped: bool = False
    notes: list[str] = field(default_factory=list)

    def missed(self, reason: str, n: int) -> None:
        """Count ``n`` windows missed for ``reason``."""
        if n:
            self.n_windows_missed += n
            self.missed_reasons[reason] = self.missed_reasons.get(reason, 0) + n

    @property
    def exit_code(self) -> int:
        """0, or :data:`EXIT_MISSED` when windows were missed (their AIS is lost)."""
        return EXIT_MISSED if self.n_windows_missed else 0

    def summary_table(self) -> str:
        rows: list[tuple[str, Any]] = [
            ("world", "embedded (synthetic)" if self.embedded else "real services"),
            ("schedule windows", self.n_windows),
            ("windows captured", self.n_windows_captured),
            ("windows missed", self.n_windows_missed),
            ("windows later (planned)", self.n_windows_later),
            ("windows queued (L2A lag)", self.n_windows_queued),
            ("windows chipped", self.n_windows_chipped),
            (f"AIS points ({self.ais_provider or '-'})", self.ais_points)]
        if self.chip is not None:
            c = self.chip
            rows += [("STAC searches", c.n_searches), ("chips planned", c.n_planned),
                     ("already in dataset", c.n_skipped_existing), ("chips cut", c.n_chips),
                     ("passed the gate", c.n_passed), ("chips in index", c.index_rows)]
        rows.append(("stopped early", "yes" if self.stopped else "no"))
        w = max(len(r[0]) for r in rows)
        lines = [f"  {k:<{w}}  {v!s:>20}" for k, v in rows]
        lines += [f"  missed: {n} {reason}" for reason, n in self.missed_reasons.items()]
        return "\n".join(lines)
