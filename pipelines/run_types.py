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

    ``snapshot()`` → dict(stage, message, done, total, unit, since, since_done,
    stop_requested, updated): ``done`` of ``total`` ``unit`` (``"searches"``, ``"chips
    written"``, …); the count was ``since_done`` at ``since`` (when it was first reported:
    the rate for an ETA is ``(done - since_done) / (now - since)``). Listeners added with
    :meth:`subscribe` are called on every change (from the run's thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.stop_event = threading.Event()
        self._state: dict[str, Any] = {"stage": "idle", "message": "", "done": 0, "total": 0,
                                       "unit": "", "since": time.time(),
                                       "since_done": 0, "updated": time.time()}
        self._listeners: list[Callable[[dict[str, Any]], None]] = []

    def subscribe(self, fn: Callable[[dict[str, Any]], None]) -> None:
        with self._lock:
            self._listeners.append(fn)

    def unsubscribe(self, fn: Callable[[dict[str, Any]], None]) -> None:
        with self._lock:
            if fn in self._listeners:
                self._listeners.remove(fn)

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
        self._update(stage=stage, message=message, done=0, total=0, unit="",
                     since=time.time(), since_done=0)

    def progress(self, done: int, total: int, unit: str = "") -> None:
        """``done`` of ``total`` ``unit`` (a new unit or total starts a new count)."""
        with self._lock:
            new = unit != self._state["unit"] or int(total) != self._state["total"]
        self._update(done=int(done), total=int(total), unit=unit,
                     **({"since": time.time(), "since_done": int(done)} if new else {}))

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
    summary: str = ""  # :meth:`outcome` of the index after the run (set by run_batch)

    def missed(self, reason: str, n: int) -> None:
        """Count ``n`` windows missed for ``reason``."""
        if n:
            self.n_windows_missed += n
            self.missed_reasons[reason] = self.missed_reasons.get(reason, 0) + n

    @property
    def exit_code(self) -> int:
        """0, or :data:`EXIT_MISSED` when windows were missed (their AIS is lost)."""
        return EXIT_MISSED if self.n_windows_missed else 0

    def outcome(self, index: pd.DataFrame) -> str:
        """One line for people: the new chips that passed and, when there are none or
        some were skipped, why — e.g. ``0 new chip(s) passed: 111 of 111 planned already
        in the dataset; it holds 76 passed, 35 rejected (20 cloud, 15 land)``. ``index``:
        the dataset's chip index after the run."""
        c = self.chip
        new = c.n_passed if c is not None else 0
        why = []
        if c is None:
            if self.n_windows == 0:
                why.append("no overpass in the horizon")
            elif self.n_windows_queued or self.n_windows_later:
                why.append(f"no window due: {self.n_windows_queued} waiting for the L2A lag, "
                           f"{self.n_windows_later} later")
            else:
                why.append("every window was chipped by an earlier run")
        else:
            if c.n_skipped_existing:
                why.append(f"{c.n_skipped_existing} of {c.n_planned} planned already in the "
                           "dataset")
            if c.n_chips > c.n_passed:
                why.append(f"{c.n_chips - c.n_passed} of {c.n_chips} cut rejected by the gate")
            if c.n_planned == 0:
                why.append("no chip planned (no scene or no ship position in a scene)")
        text = f"{new} new chip(s) passed"
        if why and (new == 0 or (c is not None and c.n_skipped_existing)):
            text += ": " + "; ".join(why)
        if len(index) and new == 0:
            ok = index["qa_pass"].astype(bool)
            first = index.loc[~ok, "qa_reason"].astype(str).str.split(r"[ :;]", n=1).str[0]
            reasons = ", ".join(f"{n} {r}" for r, n in first.value_counts().items())
            text += f"; the dataset holds {int(ok.sum())} passed, {int((~ok).sum())} " \
                    f"rejected" + (f" ({reasons})" if reasons else "")
        return text

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
