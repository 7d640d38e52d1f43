"""The stages of one ``s2xr run`` batch: predict → collect → lag → chip.

Each stage is a function of what it works on (the run's config and options, the capture
windows in the ops DB, the run's :class:`~pipelines.run_types.RunControl` and result) and of
its collaborators, passed in: the predictor (:func:`predict_schedule` or a fake) and the
chip job (:func:`~pipelines.chip_job.run_chip_job`). :func:`pipelines.run_job.run_batch`
runs them in order.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from pipelines.chip_job import ChipJobResult
from pipelines.run_types import RunControl, RunOptions, RunResult
from pipelines.services import Services
from s2xr.ais import read_ais_table
from s2xr.config import Config
from s2xr.errors import InputError
from s2xr.ops.windows import WindowStore, window_ids
from s2xr.store.layout import DatasetLayout, atomic_write

log = logging.getLogger("pipelines.run_job")

#: ``predictor(cfg, opts, world, now)`` → the overpass schedule (``world``: the embedded
#: world, or None for real services)
Predictor = Callable[[Config, RunOptions, Any, pd.Timestamp], pd.DataFrame]
#: ``chip_job(cfg, ais_file, *, progress, should_stop, max_chips, one_chip_per_ship)``
ChipJob = Callable[..., ChipJobResult]


def predict_schedule(cfg: Config, opts: RunOptions, world: Any,
                     now: pd.Timestamp) -> pd.DataFrame:
    """The overpass schedule of the run → DataFrame[tile_id, satellite, start_time_utc,
    end_time_utc, source, centre_time_utc, relative_orbit, ...]; written to
    ``plan/overpass_schedule.csv`` (and a versioned copy). ``world``: the embedded world
    (its scenes' days, backfilled), or None."""
    from s2xr.planning import predict_overpasses, write_schedule

    p = cfg.planning
    tiles = list(opts.tiles or p.tiles)
    mode = p.mode
    days = opts.days or p.prediction_days
    start = opts.start
    if world is not None:
        times = pd.to_datetime(pd.Series([it["properties"]["datetime"]
                                          for it in world.items()]), utc=True)
        tiles = tiles or [cfg.demo.tile]
        start = start or times.min().floor("D")
        days = opts.days or int((times.max().floor("D") - start).days) + 1
        if mode == "auto":
            mode = "backfill"  # the world's scenes are in the past: their real pass times
            log.info("embedded world: planning mode backfill over %s + %d day(s)",
                     start.date(), days)
    if not tiles:
        raise InputError("planning.tiles: no tiles to plan for; list MGRS tiles in the "
                         "config (planning: {tiles: [31UET, 30STE]}) or pass --tiles")
    if start is None:  # real services: the passes still to come (a window open now too)
        start = now
        schedule = predict_overpasses(tiles, now.floor("D"), days + 1, p, mode=mode)
        ends = pd.to_datetime(schedule["end_time_utc"], utc=True)
        schedule = schedule.loc[(ends > now) & (ends <= now + pd.Timedelta(days=days))]
        schedule = schedule.reset_index(drop=True)
    else:
        schedule = predict_overpasses(tiles, start, days, p, mode=mode)
    write_schedule(schedule, DatasetLayout.of(cfg).root)
    return schedule


async def _capture_replay(cfg: Config, services: Services, schedule: pd.DataFrame,
                          opts: RunOptions, control: RunControl) -> Any:
    """Capture the world's AIS through the replay server (as fast as it can stream),
    subscribed to the schedule tiles' boxes."""
    from s2xr.ais.aisstream import boxes_for_tiles
    from s2xr.ais.capture import AisCapture, CaptureSettings
    from s2xr.ais.replay import ReplayServer
    from s2xr.ais.storage import AisStore

    key = services.replay_key
    if key is None:
        raise RuntimeError("replay capture without the embedded world's replay key")
    tiles = sorted(set(schedule["tile_id"]))
    async with ReplayServer(services.replay_frames or [], speed=None,
                            valid_keys={key}) as server:
        settings = CaptureSettings.from_config(
            cfg.ais, url=server.url, boxes=tuple(boxes_for_tiles(tiles)), tiles=tuple(tiles),
            provider="synthetic", watchdog_s=30.0)
        store = AisStore(DatasetLayout.of(cfg).root, source="replay")
        capture = AisCapture(key, settings, store)
        task = asyncio.create_task(capture.run(None))
        total = len(services.replay_frames or [])
        while not server.exhausted.is_set() and not task.done():
            if control.stopped:
                break
            control.progress(server.stats.delivered, total, "AIS messages")
            await asyncio.sleep(0.1)
        control.progress(server.stats.delivered, total, "AIS messages")
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


#: a captured segment: (start, end, tiles or None for every tile, whether it connected)
Segment = tuple[pd.Timestamp, pd.Timestamp, tuple[str, ...] | None, bool]


async def _capture_live(cfg: Config, schedule: pd.DataFrame, now: pd.Timestamp,
                        control: RunControl, *, restrict: bool = True) -> list[Segment]:
    """Capture ``ais.url`` during the ``schedule`` windows that end after ``now`` (blocks
    until the last of them ends or a stop request) → the segments captured, each with
    whether a connection to the stream was made during it.

    ``restrict``: subscribe to the active windows' tile boxes only during the windows;
    otherwise capture ``ais.boxes`` (else the world) from now until the last window ends."""
    from s2xr.ais.capture import AisCapture, CaptureSettings, capture_segments
    from s2xr.ais.schedule import capture_segments_from
    from s2xr.ais.storage import AisStore

    segments = capture_segments_from(schedule, now=now, pad_s=cfg.ais.schedule_pad_s)
    if not segments:
        return []
    settings = CaptureSettings.from_config(cfg.ais)
    host = settings.url.split("://", 1)[-1].split("/", 1)[0]
    store = AisStore(DatasetLayout.of(cfg).root, xlsx=cfg.ais.write_xlsx, source=host)
    capture = AisCapture(cfg.ais.api_key, settings, store)

    async def watch_stop() -> None:
        while not control.stopped:
            await asyncio.sleep(0.25)
        capture.request_stop()

    watcher = asyncio.create_task(watch_stop())
    out: list[Segment] = []
    try:
        if not restrict:
            end = max(b for _, b, _ in segments)
            await capture.run(end)
            return [(segments[0][0], end, None, capture.result.connections > 0)]
        for seg in segments:
            if control.stopped:
                break
            before = capture.result.connections
            await capture_segments(capture, [seg])
            out.append((seg[0], seg[1], seg[2], capture.result.connections > before))
        return out
    finally:
        watcher.cancel()
        store.close()
        log.info("AIS capture: %s", capture.result.summary())


def due_for_capture(windows: pd.DataFrame, now: pd.Timestamp, ahead_min: float
                    ) -> pd.DataFrame:
    """The windows (ending after ``now``) a batch captures: those starting within
    ``ahead_min`` minutes, and each next one starting within ``ahead_min`` of the end of
    one already taken — so a batch every ``ahead_min`` minutes or more often (cron, a
    continuous run) leaves no window between two batches."""
    ahead = pd.Timedelta(minutes=ahead_min)
    horizon = now + ahead
    keep = []
    for w in windows.sort_values("start_time").itertuples():
        if w.start_time <= horizon:
            keep.append(w.Index)
            horizon = max(horizon, w.end_time + ahead)
    return windows.loc[keep]


NOT_CAPTURING = "ended while no s2xr run was capturing"


def _capture_real(services: Services, opts: RunOptions, schedule: pd.DataFrame,
                  todo: pd.DataFrame, windows: WindowStore, control: RunControl,
                  result: RunResult, now: pd.Timestamp) -> None:
    """The real-service capture: windows that already ended are missed; the due ones
    (:func:`due_for_capture`) are captured live, each ``captured`` once it ended if the
    stream was reached during it, else ``missed``; later ones stay ``planned``."""
    cfg = services.cfg
    stale = windows.windows(["planned"])
    stale = stale.loc[stale["end_time"] <= now]
    windows.set_state(stale["window_id"], "missed")
    result.missed(NOT_CAPTURING, len(stale))
    live = todo.loc[todo["end_time"] > now]
    due = due_for_capture(live, now, opts.capture_ahead_min)
    result.n_windows_later = len(live) - len(due)
    if due.empty:
        return
    rows = schedule.loc[window_ids(schedule).isin(set(due["window_id"])).to_numpy()]
    segs = asyncio.run(_capture_live(cfg, rows, now, control,
                                     restrict=opts.restrict_to_schedule))
    clock = pd.Timestamp.now(tz="UTC")
    ended = due.loc[due["end_time"] <= clock]  # a stop leaves the others planned
    layout = DatasetLayout.of(cfg)
    points = _captured_points(layout.root)
    host = cfg.ais.url.split("://", 1)[-1].split("/", 1)[0]
    for w in ended.itertuples():
        reached = any(ok for a, b, tiles, ok in segs if a < w.end_time and b > w.start_time
                      and (tiles is None or w.tile_id in tiles))
        if not reached:
            windows.set_state([w.window_id], "missed")
            result.missed(f"no connection to {host} during the window (network, ais.url; "
                          "see the log)", 1)
            continue
        n = len(_points_in_windows(points, ended.loc[[w.Index]])) if len(points) else 0
        windows.set_state([w.window_id], "captured", ais_path=str(layout.ais_observations),
                          n_points=n)
        result.n_windows_captured += 1
        if not n:
            result.notes.append(f"window {w.window_id}: captured, but no AIS position in "
                                "the tile during it")


def _captured_points(root: Path) -> pd.DataFrame:
    from s2xr.ais.storage import read_capture

    if not DatasetLayout(root).ais_observations.exists():
        return pd.DataFrame(columns=["time", "tile_id"])
    return read_capture(root).points


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


# --------------------------------------------------------------------------- stages
def predict(services: Services, opts: RunOptions, windows: WindowStore, result: RunResult,
            now: pd.Timestamp, predictor: Predictor) -> pd.DataFrame:
    """Predict the schedule (``predictor``) and plan its windows in the ops DB."""
    cfg = services.cfg
    schedule = predictor(cfg, opts, services.world, now)
    result.schedule_path = DatasetLayout.of(cfg).schedule
    result.n_windows = len(schedule)
    windows.plan(schedule, result.run_id)
    return schedule


def collect(services: Services, opts: RunOptions, schedule: pd.DataFrame,
            windows: WindowStore, control: RunControl, result: RunResult,
            now: pd.Timestamp) -> bool:
    """Capture the AIS of the schedule's ``planned`` windows: the world's synthetic AIS
    directly (``dry_run_ais``), through the replay server (embedded world) or from
    ``ais.url`` during the windows. Returns False when a stop left the capture partial
    (its windows stay planned)."""
    cfg = services.cfg
    layout = DatasetLayout.of(cfg)
    ids = set(window_ids(schedule))
    wins = windows.windows()
    wins = wins.loc[wins["window_id"].isin(ids)]
    todo = wins.loc[wins["state"] == "planned"]
    control.set_stage("collect", f"{len(todo)} window(s)")
    if services.world is None and not opts.dry_run_ais:
        _capture_real(services, opts, schedule, todo, windows, control, result, now)
        return True
    if not len(todo):
        return True
    if opts.dry_run_ais:
        log.warning("--dry-run-ais: using the embedded world's SYNTHETIC AIS directly "
                    "(no capture)")
        pts = _points_in_windows(read_ais_table(services.world.ais_path).points, todo)
        path = layout.run_ais(result.run_id, dry_run=True)
        atomic_write(path, lambda p: pts.to_parquet(p, index=False))
        windows.set_state(todo["window_id"], "captured", ais_path=str(path),
                          n_points=len(pts))
        result.n_windows_captured = len(todo)
    elif services.world is not None:
        res = asyncio.run(_capture_replay(cfg, services, schedule, opts, control))
        log.info("replay capture: %s", res.summary())
        if control.stopped:  # a partial capture: the windows stay planned
            return False
        windows.set_state(todo["window_id"], "captured", ais_path=str(layout.ais_observations),
                          n_points=res.positions_stored)
        result.n_windows_captured = len(todo)
    return True


def lag(cfg: Config, schedule: pd.DataFrame, windows: WindowStore, result: RunResult,
        clock_now: pd.Timestamp) -> pd.DataFrame:
    """Queue the captured windows younger than ``ops.lag_days`` (their L2A product is not
    out yet) → the windows due for chipping: every captured or queued window whose lag
    has passed, also one an earlier (stopped) run captured that is no longer in this run's
    schedule."""
    lag_td = pd.Timedelta(days=cfg.ops.lag_days)
    ids = set(window_ids(schedule))
    wins = windows.windows()
    ready = ["captured", "queued"]
    wins = wins.loc[wins["window_id"].isin(ids) | wins["state"].isin(ready)]
    ready_states = wins["state"].isin(ready)
    young = ready_states & (wins["end_time"] + lag_td > clock_now)
    if young.any():
        for w in wins.loc[young].itertuples():
            windows.set_state([w.window_id], "queued", chip_after=w.end_time + lag_td)
        log.info("%d window(s) younger than lag_days=%.1f: queued", int(young.sum()),
                 cfg.ops.lag_days)
    result.n_windows_queued = int(young.sum())
    return wins.loc[ready_states & ~young]


def window_points(due: pd.DataFrame) -> pd.DataFrame:
    """The AIS points of the ``due`` windows (each window's file, inside its time and
    tile); windows whose AIS is missing are skipped with an error."""
    frames = []
    for path, group in due.groupby("ais_path"):
        p = Path(str(path))
        if not p.exists():
            log.error("AIS of window(s) %s missing at %s: skipped", list(group.window_id), p)
            continue
        if p.name == DatasetLayout.AIS_OBSERVATIONS:  # a capture: positions + static records
            from s2xr.ais.storage import read_capture

            pts = read_capture(p.parent.parent).points
        else:
            pts = pd.read_parquet(p)
        frames.append(_points_in_windows(pts, group))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def chip(cfg: Config, opts: RunOptions, due: pd.DataFrame, windows: WindowStore,
         control: RunControl, result: RunResult, *, embedded: bool,
         chip_job: ChipJob) -> None:
    """Chip the due windows' AIS (at most ``max_ships`` vessels) with ``chip_job``; the
    windows become ``chipped`` unless a stop left chips unwritten."""
    points = _limit_ships(window_points(due), opts.max_ships)
    result.ais_points = len(points)
    result.ais_provider = ",".join(sorted(map(str, points["provider"].dropna().unique()))) \
        if "provider" in points and len(points) else ("synthetic" if embedded else "aisstream")
    if points.empty:
        windows.set_state(due["window_id"], "chipped", n_points=0)
        return
    ais_file = DatasetLayout.of(cfg).run_ais(result.run_id)
    atomic_write(ais_file, lambda p: points.to_parquet(p, index=False))
    result.chip = chip_job(cfg, ais_file, progress=control.progress,
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
