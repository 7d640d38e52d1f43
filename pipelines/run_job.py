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

import asyncio
import contextlib
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from pipelines.chip_job import ChipJobResult, db_path, run_chip_job
from s2xr.ais import read_ais_table
from s2xr.config import Config, with_overrides
from s2xr.errors import InputError
from s2xr.ops import JobStore
from s2xr.ops.windows import WindowStore, window_ids
from s2xr.store.consistency import dataset_lock
from s2xr.store.layout import atomic_write, ensure_writable

log = logging.getLogger(__name__)

STAGES = ("idle", "world", "predict", "collect", "lag", "chip", "done", "stopped", "failed")


@dataclass(frozen=True)
class RunOptions:
    """What a run does beyond the config (the CLI flags and the dashboard's controls).

    ``max_ships``: at most this many vessels (the lowest MMSIs, deterministic);
    ``max_chips``: at most this many new chips; ``bind_chips_to_ships``: one chip per ship
    (its scene nearest in time), so ``max_chips`` = ``max_ships``; ``restrict_to_schedule``:
    capture only the schedule tiles' boxes during their windows; ``dry_run_ais``: skip the
    capture and use the embedded world's synthetic AIS directly (embedded world only);
    ``days``: prediction horizon (default ``planning.prediction_days``)."""

    max_ships: int | None = None
    max_chips: int | None = None
    bind_chips_to_ships: bool = False
    include_swir: bool | None = None
    restrict_to_schedule: bool = True
    dry_run_ais: bool = False
    scheduler: str | None = None
    days: int | None = None
    start: pd.Timestamp | None = None


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


@dataclass
class RunResult:
    """What a run did, stage by stage."""

    root: Path
    run_id: str = ""
    embedded: bool = False
    schedule_path: Path | None = None
    n_windows: int = 0
    n_windows_captured: int = 0
    n_windows_queued: int = 0
    n_windows_chipped: int = 0
    ais_points: int = 0
    ais_provider: str = ""
    chip: ChipJobResult | None = None
    stopped: bool = False
    notes: list[str] = field(default_factory=list)

    def summary_table(self) -> str:
        rows: list[tuple[str, Any]] = [
            ("world", "embedded (synthetic)" if self.embedded else "real services"),
            ("schedule windows", self.n_windows),
            ("windows captured", self.n_windows_captured),
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
        return "\n".join(f"  {k:<{w}}  {v!s:>20}" for k, v in rows)


# --------------------------------------------------------------------------- helpers
def uses_embedded_world(cfg: Config) -> bool:
    """``stac.api_url`` and ``stac.catalog`` both null: the embedded offline world."""
    return cfg.stac.api_url is None and cfg.stac.catalog is None


@dataclass
class _Services:
    cfg: Config
    world: Any = None
    replay_frames: list[str] | None = None
    replay_key: str | None = None


@contextlib.contextmanager
def serve_embedded_stac(cfg: Config, control: RunControl | None = None
                        ) -> Iterator[tuple[Config, Any]]:
    """``(cfg, None)`` for a real config; for the embedded world (``stac.api_url: null``),
    builds or reuses the world and yields ``(cfg pointed at its STAC API, world)`` while
    the API is served on 127.0.0.1 (stopped on exit)."""
    if not uses_embedded_world(cfg):
        yield cfg, None
        return
    from s2xr.demo import StacApiServer, build_world

    if control is not None:
        control.set_stage("world", "building or reusing the embedded world (synthetic)")
    world = build_world(Path(cfg.storage.root) / "world", cfg.demo)
    with StacApiServer(world.collection_path, world.items_path) as server:
        log.info("embedded world: %d synthetic item(s) served at %s", len(world.item_ids),
                 server.url)
        yield with_overrides(cfg, {"stac": {"api_url": server.url,
                                            "collection": world.collection}}), world


@contextlib.contextmanager
def _services(cfg: Config, control: RunControl) -> Iterator[_Services]:
    """The embedded world's STAC API and replay frames for the run, or the real config."""
    with serve_embedded_stac(cfg, control) as (run_cfg, world):
        if world is None:
            yield _Services(run_cfg)
            return
        from s2xr.ais.synthetic import to_aisstream_frames

        frames = to_aisstream_frames(read_ais_table(world.ais_path).points)
        log.info("embedded world: %d AIS frame(s) for the replay server", len(frames))
        # the replay server accepts only this run's throw-away key, never the user's
        key = f"replay-{secrets.token_hex(8)}"
        run_cfg = run_cfg.model_copy(update={"ais": run_cfg.ais.model_copy(
            update={"api_key": None})})
        yield _Services(run_cfg, world=world, replay_frames=frames, replay_key=key)


# --------------------------------------------------------------------------- stages
def predict_schedule(cfg: Config, opts: RunOptions, services: _Services,
                     now: pd.Timestamp) -> pd.DataFrame:
    """The overpass schedule of the run → DataFrame[tile_id, satellite, start_time_utc,
    end_time_utc, source, centre_time_utc, relative_orbit, ...]; written to
    ``plan/overpass_schedule.csv`` (and a versioned copy)."""
    from s2xr.planning import predict_overpasses, write_schedule

    p = cfg.planning
    tiles = list(p.tiles)
    mode = p.mode
    days = opts.days or p.prediction_days
    start = opts.start
    if services.world is not None:
        times = pd.to_datetime(pd.Series([it["properties"]["datetime"]
                                          for it in services.world.items()]), utc=True)
        tiles = tiles or [services.cfg.demo.tile]
        start = start or times.min().floor("D")
        days = opts.days or int((times.max().floor("D") - start).days) + 1
        if mode == "auto":
            mode = "backfill"  # the world's scenes are in the past: their real pass times
            log.info("embedded world: planning mode backfill over %s + %d day(s)",
                     start.date(), days)
    if not tiles:
        raise InputError("planning.tiles: no tiles to plan for; list MGRS tiles (e.g. "
                         "[30STF, 39QTA]) in the config")
    start = start if start is not None else now.floor("D")
    schedule = predict_overpasses(tiles, start, days, p, mode=mode)
    write_schedule(schedule, Path(cfg.storage.root))
    return schedule


async def _capture_replay(cfg: Config, services: _Services, schedule: pd.DataFrame,
                          opts: RunOptions, control: RunControl) -> Any:
    """Capture the world's AIS through the replay server (as fast as it can stream),
    subscribed to the schedule tiles' boxes."""
    from s2xr.ais.aisstream import boxes_for_tiles
    from s2xr.ais.capture import AisCapture, CaptureSettings
    from s2xr.ais.replay import ReplayServer
    from s2xr.ais.storage import AisStore

    tiles = sorted(set(schedule["tile_id"]))
    async with ReplayServer(services.replay_frames or [], speed=None,
                            valid_keys={services.replay_key}) as server:
        settings = CaptureSettings.from_config(
            cfg.ais, url=server.url, boxes=tuple(boxes_for_tiles(tiles)), tiles=tuple(tiles),
            provider="synthetic", watchdog_s=30.0)
        store = AisStore(Path(cfg.storage.root), source="replay")
        capture = AisCapture(services.replay_key, settings, store)
        task = asyncio.create_task(capture.run(None))
        total = len(services.replay_frames or [])
        while not server.exhausted.is_set() and not task.done():
            if control.stopped:
                break
            control.progress(server.stats.delivered, total)
            await asyncio.sleep(0.1)
        control.progress(server.stats.delivered, total)
        # let every frame the server sent arrive (counted, not timed: a busy machine may
        # take a while), then stop and flush
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 600
        while (capture.result.frames < server.stats.frames_sent and not task.done()
               and not control.stopped and loop.time() < deadline):
            await asyncio.sleep(0.05)
        if capture.result.frames < server.stats.frames_sent and not control.stopped:
            log.warning("replay capture: %d of %d frame(s) arrived before the stop",
                        capture.result.frames, server.stats.frames_sent)
        capture.request_stop()
        res = await task
        store.close()
    return res


async def _capture_live(cfg: Config, schedule: pd.DataFrame, now: pd.Timestamp,
                        horizon_end: pd.Timestamp, control: RunControl, *,
                        restrict: bool = True) -> Any:
    """Capture ``ais.url`` during the schedule windows that end after ``now`` and start
    before ``horizon_end`` (blocks until the last of them ends or a stop request).

    ``restrict``: subscribe to the active windows' tile boxes only during the windows;
    otherwise capture ``ais.boxes`` (else the world) from now until the last window ends."""
    from s2xr.ais.capture import AisCapture, CaptureSettings, capture_segments
    from s2xr.ais.schedule import capture_segments_from
    from s2xr.ais.storage import AisStore

    segments = [(a, b, t) for a, b, t in capture_segments_from(
        schedule, pad_s=cfg.ais.schedule_pad_s) if b > now and a < horizon_end]
    if not segments:
        return None
    settings = CaptureSettings.from_config(cfg.ais)
    host = settings.url.split("://", 1)[-1].split("/", 1)[0]
    store = AisStore(Path(cfg.storage.root), xlsx=cfg.ais.write_xlsx, source=host)
    capture = AisCapture(cfg.ais.api_key, settings, store)

    async def watch_stop() -> None:
        while not control.stopped:
            await asyncio.sleep(0.25)
        capture.request_stop()

    watcher = asyncio.create_task(watch_stop())
    try:
        if not restrict:
            return await capture.run(max(b for _, b, _ in segments))
        return await capture_segments(capture, segments)
    finally:
        watcher.cancel()
        store.close()


def _points_in_windows(points: pd.DataFrame, windows: pd.DataFrame) -> pd.DataFrame:
    """AIS rows whose time falls inside a window of the tile they were captured for (or,
    without a tile column, any window)."""
    t = pd.to_datetime(points["time"], utc=True)
    keep = pd.Series(False, index=points.index)
    for w in windows.itertuples():
        inside = (t >= w.start_time) & (t <= w.end_time)
        if "tile_id" in points:
            inside &= points["tile_id"].isna() | (points["tile_id"] == w.tile_id)
        keep |= inside
    return points.loc[keep]


def _limit_ships(points: pd.DataFrame, max_ships: int | None) -> pd.DataFrame:
    if not max_ships:
        return points
    keep = sorted(points["mmsi"].unique())[:max_ships]
    return points.loc[points["mmsi"].isin(keep)]


def _write_run_ais(root: Path, run_id: str, points: pd.DataFrame) -> Path:
    path = root / "ais" / "runs" / f"run-{run_id}.parquet"
    atomic_write(path, lambda p: points.to_parquet(p, index=False))
    return path


# --------------------------------------------------------------------------- the batch
def run_batch(cfg: Config, opts: RunOptions | None = None, *,
              control: RunControl | None = None,
              now: pd.Timestamp | None = None) -> RunResult:
    """One end-to-end batch. Computes and writes; returns a :class:`RunResult`.

    predict (schedule CSV) → collect (replay server for the embedded world, ``ais.url``
    otherwise; or the world's synthetic AIS with ``dry_run_ais``) → windows younger than
    ``ops.lag_days`` are queued → the others are chipped through the chip job (search, cut,
    gate, stores, ops DB). Re-running adds nothing: windows already chipped are skipped and
    chips already in the dataset are not cut again."""
    opts = opts or RunOptions()
    control = control or RunControl()
    sections: dict[str, dict[str, Any]] = {}
    if opts.include_swir is not None:
        sections["chip"] = {"include_swir": opts.include_swir}
    if opts.scheduler:
        sections["dask"] = {"scheduler": opts.scheduler}
    if sections:
        cfg = with_overrides(cfg, sections, source="run options")
    root = Path(cfg.storage.root)
    ensure_writable(root)
    if opts.dry_run_ais and not uses_embedded_world(cfg):
        raise InputError("--dry-run-ais uses synthetic AIS and exists only for the embedded "
                         "world (stac.api_url: null); capture real AIS instead")
    # the dataset lock covers the whole run (plan/, ais/, capture windows, chips), not
    # just its chip stage: a second run on the same root is refused before it captures
    with dataset_lock(root, reentrant=True):
        return _run_batch_locked(cfg, opts, control, root, now)


def _run_batch_locked(cfg: Config, opts: RunOptions, control: RunControl, root: Path,
                      now: pd.Timestamp | None) -> RunResult:
    jobs = JobStore(db_path(cfg), cfg.ops)
    windows = WindowStore(db_path(cfg))
    result = RunResult(root=root, embedded=uses_embedded_world(cfg))
    run_id = jobs.start_run("run")
    result.run_id = run_id
    try:
        with _services(cfg, control) as services:
            _batch(services, opts, control, jobs, windows, result,
                   now or pd.Timestamp.now(tz="UTC"))
    except BaseException as exc:
        status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        jobs.end_run(run_id, status, {"error": f"{type(exc).__name__}: {exc}"})
        control.set_stage("failed", f"{type(exc).__name__}: {exc}")
        raise
    result.stopped = control.stopped
    jobs.end_run(run_id, "interrupted" if result.stopped else "done",
                 {"windows": result.n_windows, "chipped": result.n_windows_chipped,
                  "queued": result.n_windows_queued,
                  "passed": result.chip.n_passed if result.chip else 0})
    control.set_stage("stopped" if result.stopped else "done",
                      f"{result.chip.n_passed if result.chip else 0} new chip(s) passed")
    return result


def _batch(services: _Services, opts: RunOptions, control: RunControl, jobs: JobStore,
           windows: WindowStore, result: RunResult, now: pd.Timestamp) -> None:
    cfg = services.cfg
    root = Path(cfg.storage.root)
    embedded = services.world is not None
    # -- predict
    control.set_stage("predict")
    schedule = predict_schedule(cfg, opts, services, now)
    result.schedule_path = root / "plan" / "overpass_schedule.csv"
    result.n_windows = len(schedule)
    windows.plan(schedule, result.run_id)
    if schedule.empty:
        result.notes.append("no overpass in the horizon")
        return
    ids = set(window_ids(schedule))
    wins = windows.windows()
    wins = wins.loc[wins["window_id"].isin(ids)]
    if control.stopped:
        return
    # -- collect
    todo = wins.loc[wins["state"] == "planned"]
    control.set_stage("collect", f"{len(todo)} window(s)")
    provider = "synthetic" if embedded else "aisstream"
    if len(todo):
        if opts.dry_run_ais:
            log.warning("--dry-run-ais: using the embedded world's SYNTHETIC AIS directly "
                        "(no capture)")
            pts = read_ais_table(services.world.ais_path).points
            pts = _points_in_windows(pts, todo)
            path = root / "ais" / "runs" / f"dry-run-{result.run_id}.parquet"
            atomic_write(path, lambda p: pts.to_parquet(p, index=False))
            windows.set_state(todo["window_id"], "captured", ais_path=str(path),
                              n_points=len(pts))
        elif embedded:
            res = asyncio.run(_capture_replay(cfg, services, schedule, opts, control))
            log.info("replay capture: %s", res.summary())
            if control.stopped:  # a partial capture: the windows stay planned
                return
            windows.set_state(todo["window_id"], "captured",
                              ais_path=str(root / "indexes" / "ais_observations.parquet"),
                              n_points=res.positions_stored)
        else:
            horizon = now + pd.Timedelta(days=opts.days or cfg.planning.prediction_days)
            past = todo.loc[todo["end_time"] <= now]
            if len(past):
                windows.set_state(past["window_id"], "missed")
            live = todo.loc[todo["end_time"] > now]
            if len(live):
                res = asyncio.run(_capture_live(cfg, schedule, now, horizon, control,
                                                restrict=opts.restrict_to_schedule))
                if res is not None:
                    log.info("AIS capture: %s", res.summary())
                ended = live.loc[live["end_time"] <= pd.Timestamp.now(tz="UTC")]
                windows.set_state(ended["window_id"], "captured",
                                  ais_path=str(root / "indexes" / "ais_observations.parquet"))
    if control.stopped:
        return
    # -- lag: captured windows younger than lag_days wait for the L2A product
    control.set_stage("lag")
    clock_now = now if embedded else pd.Timestamp.now(tz="UTC")
    lag = pd.Timedelta(days=cfg.ops.lag_days)
    # every captured or queued window is due once its lag has passed, also one an earlier
    # (stopped) run captured that is no longer in this run's schedule
    wins = windows.windows()
    ready = ["captured", "queued"]
    wins = wins.loc[wins["window_id"].isin(ids) | wins["state"].isin(ready)]
    ready_states = wins["state"].isin(ready)
    young = ready_states & (wins["end_time"] + lag > clock_now)
    if young.any():
        for w in wins.loc[young].itertuples():
            windows.set_state([w.window_id], "queued", chip_after=w.end_time + lag)
        log.info("%d window(s) younger than lag_days=%.1f: queued", int(young.sum()),
                 cfg.ops.lag_days)
    result.n_windows_captured = int((wins["state"] != "planned").sum())
    result.n_windows_queued = int(young.sum())
    due = wins.loc[ready_states & ~young]
    if due.empty or control.stopped:
        return
    # -- chip
    control.set_stage("chip", f"{len(due)} window(s)")
    frames = []
    for path, group in due.groupby("ais_path"):
        p = Path(str(path))
        if not p.exists():
            log.error("AIS of window(s) %s missing at %s: skipped", list(group.window_id), p)
            continue
        if p.name == "ais_observations.parquet":  # a capture: positions + static records
            from s2xr.ais.storage import read_capture

            pts = read_capture(p.parent.parent).points
        else:
            pts = pd.read_parquet(p)
        frames.append(_points_in_windows(pts, group))
    points = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    points = _limit_ships(points, opts.max_ships)
    result.ais_points = len(points)
    result.ais_provider = ",".join(sorted(map(str, points["provider"].dropna().unique()))) \
        if "provider" in points and len(points) else provider
    if points.empty:
        windows.set_state(due["window_id"], "chipped", n_points=0)
        return
    ais_file = _write_run_ais(root, result.run_id, points)
    result.chip = run_chip_job(cfg, ais_file, progress=control.progress,
                               should_stop=lambda: control.stopped, **_chip_limits(opts))
    if control.stopped:  # chips left unwritten: the windows stay due for the next run
        result.notes.append("stopped during the chip stage: re-run to finish the windows")
        return
    windows.set_state(due["window_id"], "chipped")
    result.n_windows_chipped = len(due)


def _chip_limits(opts: RunOptions) -> dict[str, Any]:
    """The chip job's per-run limits: 1:1 binding caps chips at the ships."""
    max_chips = opts.max_chips
    if opts.bind_chips_to_ships and max_chips is None:
        max_chips = opts.max_ships
    return {"max_chips": max_chips, "one_chip_per_ship": opts.bind_chips_to_ships}


# --------------------------------------------------------------------------- continuous
def run_continuous(cfg: Config, opts: RunOptions | None = None, *, interval_min: float = 30,
                   control: RunControl | None = None, max_cycles: int | None = None
                   ) -> list[RunResult]:
    """Cycles of :func:`run_batch` every ``interval_min`` minutes until a stop request (or
    ``max_cycles``). Each cycle re-plans, captures the windows that are due, and chips the
    windows whose lag has passed; the window states in the ops DB make it resumable."""
    control = control or RunControl()
    results: list[RunResult] = []
    cycle = 0
    root = Path(cfg.storage.root)
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
