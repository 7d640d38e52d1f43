"""Keep the stores consistent: one writer at a time, and repair after a crash.

Writes go files → cube → index, so after a crash (even SIGKILL) the index is the truth:
:func:`reconcile` truncates cube rows and deletes chip files the index does not name, and
removes temp files. :func:`dataset_lock` is an advisory ``flock`` on ``{root}/.s2xr.lock``
(released by the OS when the holder dies). The cube's consolidated metadata is rewritten
after every repair.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from s2xr.errors import StorageError
from s2xr.store.compact import compact_cube, recover_swap
from s2xr.store.cube import DEFAULT_BATCH, consolidate
from s2xr.store.index import read_index
from s2xr.store.layout import DatasetLayout
from s2xr.store.objects import cube_at, exists, has_zarr, join, list_files, remove, remove_tree
from s2xr.store.slots import SLOTS_ATTR, slots_per_batch

log = logging.getLogger(__name__)

LOCK_NAME = DatasetLayout.LOCK


_HELD: dict[tuple[str, int], int] = {}  # (root, thread id) → nesting depth of reentrant holds


@contextlib.contextmanager
def dataset_lock(root: Path, *, wait: bool = False, reentrant: bool = False) -> Iterator[Path]:
    """Hold the dataset's write lock; raise ``StorageError`` if another run holds it (or
    block until it is free with ``wait=True``).

    ``reentrant=True`` joins a hold this thread already has on ``root`` (a stage inside a
    run that holds the lock for its whole length, e.g. the chip job inside ``s2xr run``);
    without it, or from another thread, a second hold is refused like another process's."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    path = DatasetLayout(root).lock
    key = (str(root.resolve()), threading.get_ident())
    if reentrant and _HELD.get(key):
        _HELD[key] += 1
        try:
            yield path
        finally:
            _HELD[key] -= 1
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            raise StorageError(f"another s2xr run (pid {holder}) is writing to {root}; wait "
                               "for it to finish or stop it") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        _HELD[key] = _HELD.get(key, 0) + 1
        try:
            yield path
        finally:
            _HELD[key] -= 1
            if not _HELD[key]:
                del _HELD[key]
    finally:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


@dataclass(frozen=True)
class ReconcileReport:
    cube_rows_dropped: int
    files_removed: int
    temp_files_removed: int
    passed: frozenset[str] = frozenset()  # the index's passed chips (what the cube holds)


def _chip_arrays(group: Any) -> dict[str, Any]:
    return {name: arr for name, arr in group.arrays()
            if (arr.metadata.dimension_names or ())[:1] == ("chip",)}


def _truncate_cube(root: str | Path, keep: set[str]) -> int:
    """Make the cube hold exactly the chips of ``keep`` (the index's passed chips).

    A crash can leave an append half done — some arrays resized, others not — or the very
    first write half done (arrays missing). Trailing rows the index does not name are cut
    from every ``chip`` array, arrays longer than the valid rows are cut to them, and a cube
    the index names nothing of is removed whole. Returns the number of rows dropped."""
    import zarr

    path = cube_at(root)
    if not isinstance(path, str):
        recover_swap(path)  # a compaction a crash interrupted: one whole cube again
    if not has_zarr(path):
        if exists(path) and not keep:
            remove_tree(path)
        return 0
    try:
        # the arrays' own metadata: consolidated metadata is stale after a crash mid-append
        group = zarr.open_group(str(path), mode="r+", use_consolidated=False)
        arrays = _chip_arrays(group)
        ids = np.asarray(arrays["chip_id"][:], dtype=object)
    except (KeyError, ValueError, OSError) as exc:
        if keep:
            raise StorageError(f"chip cube {path} is damaged ({exc}) but the index names "
                               f"{len(keep)} chip(s) in it; rebuild the dataset") from exc
        remove_tree(path)
        log.warning("removed a half-written chip cube %s (%s)", path, exc)
        return 0
    if not keep:
        n = len(ids)
        remove_tree(path)
        return n
    # an append killed half way: rows beyond the shortest array are incomplete
    lengths = {name: arr.shape[0] for name, arr in arrays.items()}
    short = min(lengths.values())
    if any(c in keep for c in ids[short:]):
        raise StorageError(f"chip cube {path}: arrays shorter than the chips the index "
                           f"names ({lengths}); rebuild the dataset")
    cut = 0
    if max(lengths.values()) != short:
        for arr in arrays.values():
            if arr.shape[0] != short:
                arr.resize((short, *arr.shape[1:]))
        cut = max(lengths.values()) - short
        ids = ids[:short]
    text = ids.astype(str)
    hole = text == ""  # a reserved slot nothing was written to (s2xr.store.slots)
    _, first_copy = np.unique(text, return_index=True)
    dup = np.ones(len(text), bool)
    dup[first_copy] = False
    extra = ~hole & (~np.isin(text, list(keep)) | dup)
    used = np.flatnonzero(~hole & ~extra)
    end = int(used[-1]) + 1 if len(used) else 0
    if end < len(ids):  # trailing holes and uncommitted rows: cut
        for arr in arrays.values():
            arr.resize((end, *arr.shape[1:]))
    n_dropped = cut + int(extra[end:].sum())
    extra = extra[:end]
    if not extra.any():
        consolidate(path)
        return n_dropped
    if group.attrs.get(SLOTS_ATTR):  # uncommitted rows inside the regions: make them holes
        arrays["chip_id"].set_coordinate_selection(np.flatnonzero(extra), "")
        consolidate(path)
        return n_dropped + int(extra.sum())
    # rows in the middle (e.g. after a prune): rewrite the cube without them
    if isinstance(path, str):
        raise StorageError(f"chip cube {path} predates region writes and holds {int(extra.sum())}"
                           " chip(s) the index does not name; copy the dataset to a local "
                           "disk, run `s2xr vacuum` there and copy it back")
    compact_cube(path, keep, slots_per_batch(DEFAULT_BATCH))  # slotted from now on
    return n_dropped + int(extra.sum())


def reconcile(root: Path, data_root: str | Path | None = None) -> ReconcileReport:
    """Make cube and files agree with the index (the last thing written). ``root``: where
    the index is; ``data_root``: where the cube and chip files are (an object store URL;
    default ``root``)."""
    root = Path(root)
    index = read_index(root)
    passed = set(index.loc[index["qa_pass"].astype(bool), "chip_id"]) if len(index) else set()
    data = root if data_root is None else data_root
    dropped = _truncate_cube(data, passed)
    removed = temps = 0
    layout = DatasetLayout(root)
    chips_dir = layout.chips
    if isinstance(data, str):  # a store: objects are put whole, never a temp file
        chips = join(data, DatasetLayout.CHIPS)
        orphans = [f for f in list_files(chips) if Path(f).stem not in passed]
        remove(chips, orphans)
        removed = len(orphans)
    elif chips_dir.exists():
        for f in chips_dir.rglob("*"):
            if not f.is_file():
                continue
            if f.name.startswith(".") and f.name.endswith(".tmp"):
                f.unlink()
                temps += 1
            elif f.stem not in passed:
                f.unlink()
                removed += 1
    for f in layout.indexes.glob(".*.tmp") if layout.indexes.exists() else []:
        f.unlink()
        temps += 1
    if dropped or removed or temps:
        log.warning("reconciled %s: dropped %d cube row(s), %d orphan file(s), %d temp file(s)",
                    root, dropped, removed, temps)
    return ReconcileReport(dropped, removed, temps, frozenset(passed))
