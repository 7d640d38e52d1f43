"""The chip job: AIS table → search → position at sensing time → plan → cut → gate → store.

Wires the library's stages with the config's sections; re-running it adds nothing (chips
already in the index are skipped before cutting).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from pipelines.scheduler import use_scheduler
from s2xr.ais import AisTable, read_ais_table
from s2xr.ais.fixtime import fix_times
from s2xr.ais.mmsi import parse_mmsi
from s2xr.ais.targets import position_targets
from s2xr.chips import cut_chips, plan_chips
from s2xr.chips.limits import limit_plan
from s2xr.config import Config
from s2xr.errors import StacError
from s2xr.gate import gate_chips
from s2xr.labels import attach_ship_mask, label_chips, ship_states
from s2xr.memory import limit_malloc, release_free_memory
from s2xr.ops import JobStore
from s2xr.ops.jobs import Clock
from s2xr.ops.observations import ObservationStore
from s2xr.scenes import (
    ItemSource,
    candidate_targets,
    scene_assets,
    search_scenes,
    stack_by_epsg,
)
from s2xr.scenes.remote import take_read_failures
from s2xr.scenes.usable import split_usable_items
from s2xr.splits import assign_splits
from s2xr.store import write_chips
from s2xr.store.consistency import dataset_lock, reconcile
from s2xr.store.index import read_index
from s2xr.store.layout import DatasetLayout
from s2xr.store.objects import ensure_dataset_writable
from s2xr.store.rejects import REJECT_COLUMNS, combine_rejects, write_rejects
from s2xr.store.sync import synced

log = logging.getLogger(__name__)

Progress = Callable[[int, int, str], None]
"""``progress(done, total, unit)``: ``done`` of ``total`` ``unit`` (``"searches"``, then
``"chips written"``); what the CLI bar and the dashboard's status show."""


@dataclass
class ChipJobResult:
    """What a chip job did. ``rejects``: row/mmsi/item_id/stage/reason of everything skipped."""

    root: Path
    n_points: int
    n_items: int
    n_searches: int
    n_planned: int
    n_skipped_existing: int
    n_chips: int
    n_passed: int
    rejects: pd.DataFrame
    scheduler: str = ""
    index_rows: int = 0
    n_deferred: int = 0
    run_id: str = ""
    outputs: dict[str, Path] = field(default_factory=dict)

    def summary_table(self) -> str:
        rows = [("AIS points read", self.n_points), ("STAC searches", self.n_searches),
                ("items used", self.n_items), ("chips planned", self.n_planned),
                ("already in dataset (skipped)", self.n_skipped_existing),
                ("chips cut", self.n_chips), ("passed the gate", self.n_passed),
                ("rejected by the gate", self.n_chips - self.n_passed),
                ("points/targets without chip", int((self.rejects["stage"] != "gate").sum())
                 if len(self.rejects) else 0),
                ("jobs deferred (STAC down)", self.n_deferred),
                ("chips in index", self.index_rows)]
        w = max(len(r[0]) for r in rows)
        return "\n".join(f"  {k:<{w}}  {v:>7}" for k, v in rows)


def run_chip_job(cfg: Config, ais: str | Path | pd.DataFrame, *,
                 source: ItemSource | None = None, start: pd.Timestamp | None = None,
                 end: pd.Timestamp | None = None,
                 progress: Progress | None = None,
                 clock: Clock | None = None,
                 only_mmsi: set[int] | None = None,
                 max_chips: int | None = None,
                 one_chip_per_ship: bool = False,
                 should_stop: Callable[[], bool] | None = None,
                 ais_table: AisTable | None = None) -> ChipJobResult:
    """Run the whole chip job for an AIS table (path or DataFrame). Computes and writes.
    ``ais_table``: the table already read from the path ``ais`` (it is not read again;
    ``ais`` still names the source in the ops DB).

    Holds the dataset lock (a second concurrent run is refused), repairs what a crash left
    (:func:`~s2xr.store.consistency.reconcile`), and records every attempt in the ops DB:
    chips end ``done``, ``rejected`` (gate reason) or ``failed`` (read error, retried with
    back-off); points without a scene ``no_scene``; a STAC outage ``deferred``.

    Limits: ``one_chip_per_ship`` keeps one chip per vessel (the scene whose AIS fix is
    nearest in time; vessels already in the dataset get none), ``max_chips`` at most that
    many new chips. ``should_stop()`` is checked after every written block.
    """
    layout = DatasetLayout.of(cfg)
    ensure_dataset_writable(layout)
    # an object store root: the workspace is pulled first and pushed at the end
    with dataset_lock(layout.root, reentrant=True), synced(layout):
        reconcile(layout.root, layout.data_root)
        store = JobStore(layout.ops_db, cfg.ops, clock)
        store.recover()
        ObservationStore(layout).migrate_legacy()  # an older dataset's ops DB fixes
        run_id = store.start_run("chip")
        try:
            res = _run_chip_job(cfg, ais, store, run_id, source=source, start=start, end=end,
                                progress=progress, only_mmsi=only_mmsi,
                                max_chips=max_chips, one_chip_per_ship=one_chip_per_ship,
                                should_stop=should_stop, ais_table=ais_table)
        except BaseException as exc:
            status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
            why = f"{type(exc).__name__}: {exc}"
            with contextlib.suppress(Exception):  # the DB may sit on the full disk too
                store.fail_unfinished(run_id, f"run {status}: {why}"[:500])
            with contextlib.suppress(Exception):
                store.end_run(run_id, status, {"error": why})
            raise
        store.end_run(run_id, "done", {"chips": res.n_chips, "passed": res.n_passed,
                                       "deferred": res.n_deferred})
        res.run_id = run_id
        return res


def _run_chip_job(cfg: Config, ais: str | Path | pd.DataFrame, store: JobStore, run_id: str,
                  *, source: ItemSource | None, start: pd.Timestamp | None,
                  end: pd.Timestamp | None, progress: Progress | None,
                  only_mmsi: set[int] | None, max_chips: int | None = None,
                  one_chip_per_ship: bool = False,
                  should_stop: Callable[[], bool] | None = None,
                  ais_table: AisTable | None = None) -> ChipJobResult:
    layout = DatasetLayout.of(cfg)
    root = layout.root
    ais_source = str(Path(ais).resolve()) if isinstance(ais, str | Path) else None
    limit_malloc()  # 2 glibc arenas, big arrays mmapped, Arrow on malloc: see s2xr.memory
    table = ais_table if ais_table is not None else read_ais_table(ais)
    points = table.points
    if only_mmsi is not None:
        points = points.loc[points["mmsi"].isin(only_mmsi)]
    points = fix_times(points)  # a fix without its own time: its scheduled overpass time
    rej = [table.rejects.assign(stage="ais", item_id=None, mmsi=table.rejects.get("mmsi"),
                                value=table.rejects.get("value"))
           [["row", "mmsi", "value", "item_id", "stage", "reason"]] if len(table.rejects) else
           pd.DataFrame(columns=REJECT_COLUMNS)]
    log.info("AIS: %d valid point(s) of %d ship(s), %d rejected row(s)", len(points),
             points["mmsi"].nunique(), len(table.rejects))
    del table  # only ``points`` (and the rejects above) from here: no second copy alive
    # positional row labels without copying the columns (reset_index copies them all)
    points = points.set_axis(pd.RangeIndex(len(points)), copy=False)
    release_free_memory()  # the reader's and fix_times' freed memory back to the OS
    try:
        search = search_scenes(points, cfg.stac, source, start=start, end=end,
                               errors="collect",
                               progress=(lambda d, t: progress(d, t, "searches"))
                               if progress else None)
    except StacError as exc:
        n = store.defer(points, run_id, ais_source, f"STAC unavailable: {exc}")
        log.error("STAC unavailable: %d job(s) deferred, retried with back-off "
                  "(`s2xr ops retry`): %s", n, exc)
        rejects = combine_rejects(rej)
        write_rejects(root, rejects, parse_mmsi=parse_mmsi)
        return ChipJobResult(root=root, n_points=len(points), n_items=0, n_searches=0,
                             n_planned=0, n_skipped_existing=0, n_chips=0, n_passed=0,
                             rejects=rejects, n_deferred=n,
                             index_rows=len(read_index(root)))
    release_free_memory()
    n_deferred = 0
    failed_rows = search.failed_rows
    if failed_rows:
        # only the ship-days whose search failed wait for a retry; the others go on
        n_deferred = store.defer(points.loc[failed_rows], run_id, ais_source,
                                 "STAC search failed: " + str(search.failed["error"].iloc[0]))
        log.error("%d of %d search(es) failed: %d job(s) deferred, retried with back-off "
                  "(`s2xr ops retry`)", len(search.failed), len(search.groups), n_deferred)
        # the searched points only (no copy of the points when every search succeeded)
        points = points.drop(index=failed_rows).reset_index(drop=True)
    store.close_deferred(points, run_id)
    n_points, n_searches = len(points), len(search.groups)
    bands = cfg.chip.all_bands
    usable, bad_items = split_usable_items(search.items, (*bands, "scl"))
    del search  # its groups hold every point's row label
    rej.append(bad_items)
    assets = scene_assets(usable, bands)  # items normalised, described, checked once
    items_df = assets.table.reset_index(drop=True)
    targets, unmatched = candidate_targets(points, items_df, cfg.stac.window_hours)
    rej.append(unmatched.assign(stage="search", item_id=None))
    release_free_memory()
    positioned = position_targets(points, targets,
                                  max_extrapolation_s=cfg.ais.max_extrapolation_s,
                                  max_gap_s=cfg.ais.max_interpolation_gap_s)
    cplan = plan_chips(positioned, items_df, cfg.chip)
    ObservationStore(layout).record_for_targets(points, positioned, chips=cplan.plan)
    rej.append(cplan.rejects.assign(stage="plan", row=pd.NA))
    plan = cplan.plan
    n_planned = len(plan)
    existing_index = read_index(root)
    # chips whose read failed and whose job is still retryable are cut again (the new index
    # row replaces the old one); every other indexed chip is skipped
    unread = existing_index.loc[existing_index["qa_reason"].astype(str)
                                .str.startswith("read_error"), "chip_id"]
    retry = set(unread) & store.retryable_chip_ids()
    existing = set(existing_index["chip_id"]) - retry
    store.register_chips(cplan.plan, run_id, ais_source)
    store.mark_indexed(existing_index, set(cplan.plan["chip_id"]) & existing)
    store.no_scene(unmatched, points, run_id, ais_source)
    plan = plan.loc[~plan["chip_id"].isin(existing)].reset_index(drop=True)
    n_skip = n_planned - len(plan)
    if n_skip:
        log.info("%d chip(s) already in the dataset: skipped", n_skip)
    plan = limit_plan(plan, existing_index, max_chips=max_chips,
                      one_chip_per_ship=one_chip_per_ship)
    plan["split"] = assign_splits(plan, cfg.splits).to_numpy() if len(plan) else []
    used = assets.subset(plan["item_id"].unique())
    n_chips = n_passed = 0
    sched_label = ""
    if len(plan):
        take_read_failures()  # only this job's failures name assets below
        stacks = stack_by_epsg(used, resolution=cfg.chip.resolution,
                               resampling=cfg.chip.resampling, engine=cfg.stac.engine,
                               io_threads=cfg.stac.io_threads,
                               read_timeout_s=cfg.stac.read_timeout_s)
        chips = cut_chips(stacks, plan, cfg.chip)
        release_free_memory()  # positioning's and planning's freed memory
        # every positioned ship in each chip's footprint: boxes/points + a lazy ship_mask
        labels = label_chips(plan, ship_states(positioned, points), size=cfg.chip.size,
                             res=cfg.chip.resolution)
        # the points, targets and fixes are not needed to cut and write the chips
        del points, targets, positioned, cplan
        release_free_memory()
        gated = attach_ship_mask(gate_chips(chips, cfg.gate), labels)
        with use_scheduler(cfg.dask) as sched_label:
            total = len(plan)
            done = [0]

            def tick(n: int) -> None:
                done[0] += n
                log.info("chips written: %d/%d", done[0], total)
                if progress:
                    progress(done[0], total, "chips written")

            summary = write_chips(gated, plan, cfg.storage, cfg.gate,
                                  item_meta={i: used.provenance(i, cfg.chip.resampling)
                                             for i in used.table.index},
                                  block_size=cfg.storage.block_size, progress=tick,
                                  labels=labels, should_stop=should_stop)
        n_chips, n_passed = summary.n_chips, summary.n_passed
        idx = summary.index
        store.mark_indexed(idx, set(plan["chip_id"]),
                           read_errors=used.describe_read_failures(take_read_failures()))
        gate_rej = idx.loc[idx["chip_id"].isin(plan["chip_id"]) & ~idx["qa_pass"].astype(bool)]
        rej.append(pd.DataFrame({"row": pd.NA, "mmsi": gate_rej["mmsi"],
                                 "item_id": gate_rej["scene_id"], "stage": "gate",
                                 "reason": gate_rej["qa_reason"]}))
    rejects = combine_rejects(rej)
    write_rejects(root, rejects, parse_mmsi=parse_mmsi)
    index_rows = len(read_index(root))
    return ChipJobResult(
        root=root, n_points=n_points, n_items=len(used.items), n_searches=n_searches,
        n_planned=n_planned, n_skipped_existing=n_skip, n_chips=n_chips, n_passed=n_passed,
        rejects=rejects, scheduler=sched_label, index_rows=index_rows, n_deferred=n_deferred,
        outputs={"index": layout.index, "cube": layout.cube, "chips": layout.chips,
                 "rejects": layout.rejects, "labels": layout.labels})
