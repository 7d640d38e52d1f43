"""``s2xr run``: predict → collect → wait for the L2A lag → search → chip → gate → store.

One batch (:func:`run_batch`) or cycles of it (:func:`run_continuous`). With
``stac.api_url: null`` (``configs/demo.yaml``) the run uses the embedded offline world: it
builds (or reuses) the world, serves its STAC items with a real STAC API and its AIS with the
aisstream replay server on 127.0.0.1, and stops both at the end. Otherwise it uses the
configured STAC API and captures live from ``ais.url`` during the schedule's windows.

Progress and stop requests go through a :class:`RunControl`, shared by the CLI (tqdm bar,
SIGTERM/Ctrl-C) and the dashboard (status view, Stop button). The state of every capture
window is in the ops DB (:mod:`s2xr.ops.windows`), so a stopped run resumes where it was.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd

from pipelines import run_stages as stages
from pipelines.chip_job import run_chip_job
from pipelines.run_stages import ChipJob, Predictor, predict_schedule
from pipelines.run_status import publish_run_status
from pipelines.run_types import EXIT_MISSED, STAGES, RunControl, RunOptions, RunResult
from pipelines.services import Services, serve_embedded_stac, services, uses_embedded_world
from s2xr.config import Config, with_overrides
from s2xr.errors import InputError
from s2xr.ops import JobStore
from s2xr.ops.windows import WindowStore
from s2xr.planning.schedule import parse_tiles
from s2xr.store.consistency import dataset_lock
from s2xr.store.index import read_index
from s2xr.store.layout import DatasetLayout, ensure_writable
from s2xr.store.objects import ensure_dataset_writable
from s2xr.store.sync import synced

__all__ = ["EXIT_MISSED", "STAGES", "RunControl", "RunOptions", "RunResult", "check_runnable",
           "predict_schedule", "run_batch", "run_continuous", "serve_embedded_stac",
           "uses_embedded_world"]

log = logging.getLogger(__name__)


def run_batch(cfg: Config, opts: RunOptions | None = None, *,
              control: RunControl | None = None,
              now: pd.Timestamp | None = None,
              predictor: Predictor = predict_schedule,
              chip_job: ChipJob = run_chip_job) -> RunResult:
    """One end-to-end batch. Computes and writes; returns a :class:`RunResult`.

    predict (schedule CSV) → collect (replay server for the embedded world, ``ais.url``
    otherwise; or the world's synthetic AIS with ``dry_run_ais``) → windows younger than
    ``ops.lag_days`` are queued → the others are chipped through the chip job (search, cut,
    gate, stores, ops DB). Re-running adds nothing: windows already chipped are skipped and
    chips already in the dataset are not cut again.

    ``predictor`` makes the schedule (:data:`~pipelines.run_stages.Predictor`), ``chip_job``
    chips the due windows' AIS: pass others to run the stages against fakes."""
    opts = opts or RunOptions()
    control = control or RunControl()
    sections: dict[str, dict[str, Any]] = {}
    if opts.include_swir is not None:
        sections["chip"] = {"include_swir": opts.include_swir}
    if opts.scheduler:
        sections["dask"] = {"scheduler": opts.scheduler}
    if sections:
        cfg = with_overrides(cfg, sections, source="run options")
    layout = DatasetLayout.of(cfg)
    root = layout.root  # an object store root's workspace
    check_runnable(cfg, opts, plans=predictor is predict_schedule)
    ensure_dataset_writable(layout)
    # the dataset lock covers the whole run (plan/, ais/, capture windows, chips), not
    # just its chip stage: a second run on the same root is refused before it captures
    with dataset_lock(root, reentrant=True), synced(layout):
        return _run_batch_locked(cfg, opts, control, root, now, predictor, chip_job)


def check_runnable(cfg: Config, opts: RunOptions, *, plans: bool = True) -> None:
    """Refuse, before anything starts, a run that cannot succeed: synthetic AIS outside the
    embedded world, a horizon under a day, and on real services no tiles (when ``plans``:
    the run's own planner needs them) or no ``AISSTREAM_API_KEY`` for the live capture.
    Raises :class:`InputError` naming the fix."""
    if opts.dry_run_ais and not uses_embedded_world(cfg):
        raise InputError("--dry-run-ais uses synthetic AIS and exists only for the embedded "
                         "world (stac.api_url: null); capture real AIS instead")
    if opts.days is not None and opts.days < 1:
        raise InputError(f"--days must be 1 or more (got {opts.days})")
    if opts.capture_ahead_min < 0:
        raise InputError(f"--capture-ahead-min must be 0 or more (got {opts.capture_ahead_min})")
    if uses_embedded_world(cfg):
        return
    tiles = opts.tiles or cfg.planning.tiles
    if plans and not tiles:
        raise InputError("planning.tiles: no tiles to plan for; list MGRS tiles in the "
                         "config (planning: {tiles: [31UET, 30STE]}) or pass --tiles "
                         "31UET,30STE (see docs/real-data.md, 'Choose tiles')")
    if tiles:
        parse_tiles(tiles)  # a TileError names every bad ID
    if cfg.ais.api_key is None:
        raise InputError(f"no AISSTREAM_API_KEY: a run on real services captures AIS live "
                         f"from {cfg.ais.url}; set AISSTREAM_API_KEY in the environment or in "
                         "a .env file in the working directory (see docs/real-data.md); "
                         "nothing was started")


def _run_batch_locked(cfg: Config, opts: RunOptions, control: RunControl, root: Path,
                      now: pd.Timestamp | None, predictor: Predictor,
                      chip_job: ChipJob) -> RunResult:
    layout = DatasetLayout.of(cfg)
    jobs = JobStore(layout.ops_db, cfg.ops)
    windows = WindowStore(layout.ops_db)
    result = RunResult(root=root, embedded=uses_embedded_world(cfg))
    run_id = jobs.start_run("run")
    result.run_id = run_id
    # the status file (.s2xr-run.json): what the dashboard shows of a run it did not start
    with publish_run_status(layout, control, run_id):
        try:
            with services(cfg, control) as svc:
                _batch(svc, opts, control, windows, result,
                       now or pd.Timestamp.now(tz="UTC"), predictor=predictor,
                       chip_job=chip_job)
        except BaseException as exc:
            status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
            jobs.end_run(run_id, status, {"error": f"{type(exc).__name__}: {exc}"})
            control.set_stage("failed", f"{type(exc).__name__}: {exc}")
            raise
        result.stopped = control.stopped
        jobs.end_run(run_id, "interrupted" if result.stopped else "done",
                     {"windows": result.n_windows, "captured": result.n_windows_captured,
                      "missed": result.missed_reasons, "later": result.n_windows_later,
                      "chipped": result.n_windows_chipped, "queued": result.n_windows_queued,
                      "passed": result.chip.n_passed if result.chip else 0})
        result.summary = result.outcome(read_index(root))  # read once: CLI and dashboard
        control.set_stage("stopped" if result.stopped else "done", result.summary)
    return result


def _batch(svc: Services, opts: RunOptions, control: RunControl, windows: WindowStore,
           result: RunResult, now: pd.Timestamp, *, predictor: Predictor,
           chip_job: ChipJob) -> None:
    """predict → collect → lag → chip, stopping between stages on a stop request."""
    control.set_stage("predict")
    schedule = stages.predict(svc, opts, windows, result, now, predictor)
    if schedule.empty:
        result.notes.append("no overpass in the horizon")
        return
    if control.stopped:
        return
    if not stages.collect(svc, opts, schedule, windows, control, result, now) \
            or control.stopped:
        return
    control.set_stage("lag")
    embedded = svc.world is not None
    due = stages.lag(svc.cfg, schedule, windows, result,
                     now if embedded else pd.Timestamp.now(tz="UTC"))
    if due.empty or control.stopped:
        return
    control.set_stage("chip", f"{len(due)} window(s)")
    stages.chip(svc.cfg, opts, due, windows, control, result, embedded=embedded,
                chip_job=chip_job)


def run_continuous(cfg: Config, opts: RunOptions | None = None, *, interval_min: float = 30,
                   control: RunControl | None = None, max_cycles: int | None = None
                   ) -> list[RunResult]:
    """Cycles of :func:`run_batch` every ``interval_min`` minutes until a stop request (or
    ``max_cycles``). Each cycle re-plans, captures the windows that are due, and chips the
    windows whose lag has passed; the window states in the ops DB make it resumable."""
    control = control or RunControl()
    opts = opts or RunOptions()
    # a cycle captures what starts before the next one begins
    opts = replace(opts, capture_ahead_min=max(opts.capture_ahead_min, interval_min))
    check_runnable(cfg, opts)
    results: list[RunResult] = []
    cycle = 0
    root = DatasetLayout.of(cfg).root
    ensure_writable(root)
    with dataset_lock(root):  # held between cycles too: one writer for the whole run
        while not control.stopped and (max_cycles is None or cycle < max_cycles):
            cycle += 1
            log.info("continuous: cycle %d", cycle)
            results.append(run_batch(cfg, opts, control=control))
            if control.stopped or (max_cycles is not None and cycle >= max_cycles):
                break
            control.set_stage("idle", f"next cycle in {interval_min:g} min")
            control.stop_event.wait(interval_min * 60)
    return results
