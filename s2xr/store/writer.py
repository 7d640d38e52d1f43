"""Write gated chips to every store, batch by batch, where they are cut; commit the index.

Each chip batch is one task on the active Dask scheduler (threads, processes or a
``distributed`` cluster): it computes the batch, gates it, writes the passed chips' files
and their region of the Zarr cube (:mod:`s2xr.store.slots`) and returns only its index rows
(:func:`s2xr.store.batch.write_batch`). The client keeps a bounded number of batches in
flight, and merges the rows it got back into the GeoParquet index every ``index_every``
chips and at the end. The index is the commit record (docs/formats.md, "Commit protocol"):
it only ever names chips whose files and cube rows were written before it, and readers
(:func:`~s2xr.store.open_chips`) see only the chips it names.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask
import geopandas as gpd
import pandas as pd
import xarray as xr

from s2xr.config import GateConfig, StorageConfig
from s2xr.gate import explain_gate
from s2xr.memory import WRITE_MMAP_THRESHOLD, limit_malloc, release_free_memory
from s2xr.store.batch import BatchResult, BatchTarget, write_batch
from s2xr.store.cube import append_cube, cube_chip_ids
from s2xr.store.index import append_index, read_index
from s2xr.store.labels import label_records, merge_labels
from s2xr.store.layout import DatasetLayout
from s2xr.store.objects import ensure_dataset_writable
from s2xr.store.slots import CubeSlots, create_cube, reserve_slots, slots_per_batch, slotted
from s2xr.store.sync import push

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class WriteSummary:
    """Counts of one :func:`write_chips` call and the full index after it."""

    n_chips: int
    n_passed: int
    n_rejected: int
    index: gpd.GeoDataFrame
    root: Path
    writer_pids: frozenset[int] = frozenset()  # processes whose tasks wrote the chips


def _cluster_client() -> Any:
    """The ``distributed`` client ``.compute()`` would run on now, else ``None``."""
    if dask.config.get("scheduler", None) not in (None, "dask.distributed", "distributed"):
        return None
    try:
        from distributed import default_client
    except ImportError:
        return None
    try:
        return default_client()
    except ValueError:
        return None


def _cube_slots(gated: xr.Dataset, plan: pd.DataFrame, root: str | Path,
                gate_cfg: GateConfig | None,
                n_batches: int, block_size: int) -> CubeSlots | None:
    """Client: the cube regions of this run (the cube is created, empty, on first use), or
    ``None`` for a cube appended before slots existed (the client appends it then)."""
    have = slotted(root)
    if have is None:
        log.info("cube under %s predates region writes: the client appends it", root)
        return None
    per = slots_per_batch(block_size)
    if have == 0:
        # no chip: nothing to read. Computed here (a cluster would hold futures of keys the
        # batches share and, released, lose them under the batches)
        empty = explain_gate(gated.isel(chip=slice(0, 0)).compute(scheduler="sync"), gate_cfg)
        empty = empty.assign_coords(split=("chip", plan["split"].iloc[:0].astype(object)
                                           .to_numpy()))
        create_cube(root, empty, per)
        have = per
    per = have * -(-per // have)  # whole regions of the cube's own size
    return reserve_slots(root, n_batches, per)


def write_chips(gated: xr.Dataset, plan: pd.DataFrame, cfg: StorageConfig,
                gate_cfg: GateConfig | None = None, *, item_meta: dict[str, Any] | None = None,
                block_size: int = 32, index_every: int = 2048,
                progress: Callable[[int], None] | None = None,
                labels: pd.DataFrame | None = None,
                should_stop: Callable[[], bool] | None = None) -> WriteSummary:
    """Compute ``gated`` (from :func:`~s2xr.gate.gate_chips`, rows aligned with ``plan``,
    which must carry a ``split`` column) batch by batch and write every store of the
    dataset ``cfg`` names. Computes, on the active Dask scheduler.

    Each batch of ``block_size`` chips is cut, gated and written by one task (per-chip
    files, its cube region); a ``distributed`` cluster's workers write straight to the
    dataset, so its root must be an object store URL (``cfg.url``: files put as objects) or
    a path every worker reaches. The GeoParquet index and the daily footprints are merged
    every ``index_every`` chips and at the end — always after the files and cube rows they
    name — in the local root (an object store dataset's workspace, then pushed to the store,
    the index last: :func:`s2xr.store.sync.push`). ``item_meta``: item_id → {hrefs,
    scale_offset, resampling} for the JSON provenance. ``progress(n)`` is called after each
    batch with its size. ``labels``: the ship labels of the chips
    (:func:`s2xr.labels.label_chips`); when given, each chip's JSON gets ``labels`` and
    ``n_ships``, the index ``n_ships`` and ``indexes/labels.parquet`` the rows of the passed
    chips (written before the index rows that name them). ``should_stop()`` is checked
    before each batch starts: when it returns True the batches started are finished and
    indexed and the call returns early (``n_chips`` counts what was written)."""
    layout = DatasetLayout.of_storage(cfg)
    root, data = layout.root, layout.data_root  # the index here; files and cube at ``data``
    ensure_dataset_writable(layout)
    # chip-sized buffers (≈ 1.5 MB) from the heap, reused, not mmapped and zeroed each time
    limit_malloc(mmap_threshold=WRITE_MMAP_THRESHOLD)
    if "split" not in plan:
        raise ValueError("plan needs a 'split' column (see s2xr.splits.assign_splits)")
    plan = plan.reset_index(drop=True)
    n = gated.sizes["chip"]
    starts = list(range(0, n, block_size))
    slots = (_cube_slots(gated, plan, data, gate_cfg, len(starts), block_size)
             if cfg.write_zarr and n else None)
    target = BatchTarget(root=data, storage=cfg, gate=gate_cfg,
                         bands=tuple(str(b) for b in gated.band.values),
                         size_m=float(gated.sizes["x"] * gated.attrs.get("resolution_m", 10.0)),
                         slots=slots, item_meta=item_meta or {})
    n_ships = labels.groupby("chip_id").size() if labels is not None else None
    # chips already in the cube are not written again (re-runs are idempotent)
    in_cube = set(map(str, cube_chip_ids(data))) if cfg.write_zarr else set()
    pending: list[gpd.GeoDataFrame] = []
    pids: set[int] = set()
    written = n_pass = 0

    def flush() -> None:
        release_free_memory()
        if not pending:
            return
        rows = pd.concat(pending, ignore_index=True)
        pending.clear()
        if labels is not None:
            ok = set(rows.loc[rows["qa_pass"].astype(bool), "chip_id"])
            merge_labels(root, labels.loc[labels["chip_id"].isin(ok)])
        append_index(root, gpd.GeoDataFrame(rows, geometry="geometry", crs="EPSG:4326"))
        push(layout)  # an object store root: the commit is the index put there, last

    def batch_args(k: int) -> tuple[Any, ...]:
        sl = slice(starts[k], min(starts[k] + block_size, n))
        sub = plan.iloc[sl]
        ids = set(sub["chip_id"])
        recs = (label_records(labels.loc[labels["chip_id"].isin(ids)])
                if labels is not None else None)
        ships = n_ships.loc[n_ships.index.isin(ids)] if n_ships is not None else None
        meta = {i: target.item_meta[i] for i in sub["item_id"].unique()
                if i in target.item_meta}  # what this batch's JSON records need, no more
        return (gated.isel(chip=sl), sub, k, dataclasses.replace(target, item_meta=meta), recs,
                ships, frozenset(ids & in_cube))

    stopped = False
    for res in _run_batches(len(starts), batch_args, should_stop):
        if res is None:
            stopped = True
            continue
        if res.append is not None and res.append.sizes["chip"]:
            append_cube(data, res.append)  # a cube from before slots: the client appends
            in_cube.update(map(str, res.append["chip_id"].values))
        n_pass += res.n_passed
        pids.add(res.pid)
        pending.append(res.rows)
        written += len(res.rows)
        if sum(len(p) for p in pending) >= index_every:
            flush()
        if progress:
            progress(len(res.rows))
    if stopped:
        log.warning("stop requested: %d of %d chip(s) written, the rest left for the next run",
                    written, n)
    flush()
    index = read_index(root)  # once, at the end: the full index is not held while writing
    if pids:
        log.info("%d chip(s) written by %d process(es)%s", written, len(pids),
                 "" if pids == {os.getpid()} else " (cluster workers)")
    return WriteSummary(n_chips=written, n_passed=n_pass, n_rejected=written - n_pass,
                        index=index, root=root, writer_pids=frozenset(pids))


def _compute_and_write(lazy: xr.Dataset, *args: Any, scheduler: str | None = None
                       ) -> BatchResult:
    """Compute the batch ``lazy`` (on ``scheduler``, default: the active one), then
    :func:`~s2xr.store.batch.write_batch` it."""
    return write_batch(lazy.compute(scheduler=scheduler), *args)


def _run_batches(n_batches: int, batch_args: Callable[[int], tuple[Any, ...]],
                 should_stop: Callable[[], bool] | None) -> Iterator[BatchResult | None]:
    """Run :func:`write_batch` for batches ``0 … n_batches - 1`` (``batch_args(k)`` gives the
    lazy block and the rest of its arguments) on the active scheduler and yield the results
    in batch order; ``None`` once if ``should_stop()`` ended it early.

    On a ``distributed`` cluster every batch is one task that computes its batch on the
    worker's threads and writes it (xarray graphs sent through ``client.compute`` lost the
    keys batches share when one batch's keys were released); a stop cancels the batches
    not finished. Otherwise client threads each
    compute a batch — on the threads scheduler one batch per core, each computed in its
    thread — a bounded number at once, and a stop starts no more (those started are
    finished)."""
    client = _cluster_client()
    if client is not None:
        yield from _run_on_cluster(client, n_batches, batch_args, should_stop)
        return
    active = dask.config.get("scheduler", None)
    if active in (None, "threads", "threading"):
        # one batch per core, each cut and written in its own thread: one pool of threads,
        # not a Dask pool per batch competing for the GIL
        width, each = os.cpu_count() or 2, "sync"
    elif active in ("sync", "synchronous", "single-threaded"):
        width, each = 1, "sync"
    else:  # processes, or a scheduler function: each batch computed on it
        width, each = 2, None
    inflight: deque[Future[BatchResult]] = deque()
    stop = False
    with ThreadPoolExecutor(max_workers=width, thread_name_prefix="s2xr-write") as pool:
        try:
            k = 0
            while k < n_batches or inflight:
                while k < n_batches and len(inflight) < width and not stop:
                    if should_stop is not None and should_stop():
                        stop = True
                        break
                    inflight.append(pool.submit(_compute_and_write, *batch_args(k),
                                                scheduler=each))
                    k += 1
                if not inflight:
                    break
                yield inflight.popleft().result()  # batch order: the index grows in plan order
        finally:
            for f in inflight:
                f.cancel()
    if stop:
        yield None


def _run_on_cluster(client: Any, n_batches: int, batch_args: Callable[[int], tuple[Any, ...]],
                    should_stop: Callable[[], bool] | None) -> Iterator[BatchResult | None]:
    if should_stop is not None and should_stop():
        yield None
        return
    # each task computes its batch where it runs (the worker's threads read the COGs):
    # the client sends graphs, not chips, and gets back only index rows
    futures = []
    for k in range(n_batches):
        lazy, *rest = batch_args(k)
        # a lazy batch carries the graph of every batch (1.7 MB pickled at 5,000 chips,
        # growing with the run); culled, only its own (≈ 50 kB, whatever the run's size)
        (lazy,) = dask.optimize(lazy)
        futures.append(client.submit(_compute_and_write, lazy, *rest, scheduler="threads",
                                     pure=False))
    try:
        for k, fut in enumerate(futures):
            yield fut.result()
            if k + 1 < n_batches and should_stop is not None and should_stop():
                yield None
                return
    finally:
        client.cancel([f for f in futures if not f.done()])
