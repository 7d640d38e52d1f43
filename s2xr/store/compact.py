"""Compacting the chip cube: rewrite it with one row per chip, in cube order, without the
holes region writes leave (slots no passed chip filled: ``chip_id`` ``""``, see
:mod:`s2xr.store.slots`), so ``xr.open_zarr`` on ``chips.zarr`` shows only chips.

The rewrite streams: pixel arrays go through Dask a Zarr chunk of chips at a time, the small
per-chip arrays are read whole. The new cube is written beside the old one and swapped in
with two renames; :func:`recover_swap` (called first by every reconcile) finishes or undoes
a swap a crash interrupted, so the dataset always has one whole cube. Local roots only:
object stores have no rename (``s2xr vacuum`` says so and leaves a store's holes).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np

from s2xr.store.objects import has_zarr

log = logging.getLogger(__name__)

__all__ = ["compact_cube", "count_holes", "recover_swap"]


def _beside(path: Path, what: str) -> Path:
    return path.with_name(f".{path.name}.{what}")


def recover_swap(path: Path) -> str | None:
    """Finish or undo a cube swap a crash interrupted (local cube ``path``) → what was done
    (``"finished"``, ``"undone"``) or None. The old cube is renamed aside only once the new
    one is complete, so: old aside and no cube → rename the new one in; old aside and a cube
    → the swap was done, delete the old; a new cube without an old one aside → the rewrite
    did not finish, delete it."""
    old, new = _beside(path, "old"), _beside(path, "new")
    if old.exists():
        if not path.exists():
            new.rename(path)
        shutil.rmtree(old)
        log.warning("chip cube %s: finished a compaction a crash interrupted", path)
        return "finished"
    if new.exists():
        shutil.rmtree(new)
        log.warning("chip cube %s: removed an unfinished compaction", path)
        return "undone"
    return None


def count_holes(path: Path, keep: set[str]) -> int:
    """Rows of the cube at ``path`` that hold no chip of ``keep`` (holes and chips the
    index does not name). Reads the ``chip_id`` array only."""
    import zarr

    if not has_zarr(path):
        return 0
    ids = np.asarray(zarr.open_array(str(Path(path) / "chip_id"), mode="r")[:],
                     dtype=object).astype(str)
    return int((~np.isin(ids, list(keep))).sum()) if len(ids) else 0


def compact_cube(path: Path, keep: set[str], per_batch: int) -> int:
    """Rewrite the local cube at ``path`` with exactly the chips of ``keep`` it holds, in
    cube order, slotted in regions of ``per_batch`` → the rows removed (0: nothing to do,
    nothing written). Computes (streams the pixels through Dask). The caller holds the
    dataset lock."""
    from s2xr.store.cube import open_chips
    from s2xr.store.slots import CHIPS_PER_CHUNK, PIXEL_VARS, drop_stored_encoding, write_new_cube

    path = Path(path)
    recover_swap(path)
    holes = count_holes(path, keep)
    if not holes:
        return 0
    ds = open_chips(path)  # every chip stored, once each, holes hidden
    ids = ds["chip_id"].values.astype(object)
    ds = ds.isel(chip=np.flatnonzero(np.isin(ids, list(keep))))
    ds = ds.chunk({"chip": CHIPS_PER_CHUNK})  # pixel arrays: one Zarr chunk per task
    for name, var in list(ds.variables.items()):  # per-chip arrays are written whole
        if name not in PIXEL_VARS and "chip" in var.dims:  # (their Zarr chunks are regions)
            ds[name] = var.compute()
    drop_stored_encoding(ds)
    new, old = _beside(path, "new"), _beside(path, "old")
    shutil.rmtree(new, ignore_errors=True)
    write_new_cube(new, ds, per_batch)
    path.rename(old)  # from here recover_swap finishes the swap
    new.rename(path)
    shutil.rmtree(old)
    log.info("chip cube %s compacted: %d chip(s), %d empty or stray row(s) removed", path,
             ds.sizes["chip"], holes)
    return holes

