"""Dataset maintenance: ``vacuum`` (compact, tidy, expire pruned areas) and ``publish``
(a manifest).

Both hold the dataset lock while they change anything, so they never race a chip job.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import shutil
import sqlite3
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from s2xr.ops.prune import AREA_TIME_FORMAT, PARTIAL_SUFFIX
from s2xr.store.consistency import dataset_lock, reconcile
from s2xr.store.index import read_index
from s2xr.store.layout import DatasetLayout, atomic_write_text

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VacuumReport:
    """What ``vacuum_dataset`` did (bytes are of the ops DB file before/after)."""

    db_bytes_before: int
    db_bytes_after: int
    cube_rows_dropped: int
    orphan_files_removed: int
    temp_files_removed: int
    empty_dirs_removed: int
    pruned_areas_removed: int = 0
    cube_holes_removed: int = 0


def _compact(root: Path, data_root: str | Path | None, keep: frozenset[str]) -> int:
    """Rewrite a local cube without its holes (:mod:`s2xr.store.compact`; ``keep``: the
    passed chips) → rows removed. A store's cube keeps them (no rename there): logged."""
    from s2xr.store.compact import compact_cube
    from s2xr.store.cube import DEFAULT_BATCH
    from s2xr.store.slots import slots_per_batch, slotted

    if isinstance(data_root, str):
        log.info("vacuum: the cube in %s keeps its empty slots (object stores cannot swap "
                 "a rewritten cube in; copy the dataset to a local disk to compact it)",
                 data_root)
        return 0
    return compact_cube(DatasetLayout(root).cube, set(keep),
                        slotted(root) or slots_per_batch(DEFAULT_BATCH))


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())


def _remove_empty_dirs(top: Path) -> int:
    n = 0
    if not top.exists():
        return 0
    for dirpath, _dirs, _files in sorted(os.walk(top), key=lambda t: -len(t[0])):
        p = Path(dirpath)
        if p != top and not any(p.iterdir()):
            p.rmdir()
            n += 1
    return n


def expire_pruned(root: str | Path, *, retention_days: float = 7.0, purge: bool = False,
                  now: pd.Timestamp | None = None) -> int:
    """Empty ``{root}/pruned/``: remove the areas (``YYYYMMDDTHHMMSS``, UTC, from their
    name) older than ``retention_days`` — all of them with ``purge`` — and every
    ``….partial`` area (a prune that stopped before removing anything: the dataset still
    has those chips). Directories not named like an area are left alone. Returns the
    number of areas removed; the caller holds the dataset lock."""
    base = DatasetLayout(Path(root)).pruned
    if not base.is_dir():
        return 0
    cutoff = (now or pd.Timestamp.now(tz="UTC")) - pd.Timedelta(days=retention_days)
    n = 0
    for area in sorted(p for p in base.iterdir() if p.is_dir()):
        if area.name.endswith(PARTIAL_SUFFIX):
            expired = True
        else:
            try:
                made = pd.to_datetime(area.name[:15], format=AREA_TIME_FORMAT, utc=True)
            except ValueError:
                log.warning("vacuum: %s is not a pruned area (YYYYMMDDTHHMMSS); left alone",
                            area)
                continue
            expired = purge or made < cutoff
        if expired:
            shutil.rmtree(area)
            n += 1
            log.info("vacuum: removed pruned area %s", area)
    if not any(base.iterdir()):
        base.rmdir()
    return n


def vacuum_dataset(root: str | Path, db: str | Path, *, rm_empty: bool = False,
                   pruned_retention_days: float = 7.0, purge_pruned: bool = False,
                   now: pd.Timestamp | None = None,
                   data_root: str | Path | None = None) -> VacuumReport:
    """Repair and compact a dataset: reconcile cube and files with the index (temp files
    and orphans removed), empty the ``pruned/`` areas older than ``pruned_retention_days``
    (all with ``purge_pruned``), checkpoint and ``VACUUM`` the ops DB, and with ``rm_empty``
    remove empty directories under ``chips/`` and ``ais/``. Holds the dataset lock (joins
    this thread's hold). ``data_root``: the object store URL of the cube and chip files
    when ``root`` is the dataset's workspace."""
    root, db = Path(root), Path(db)
    with dataset_lock(root, reentrant=True):
        rec = reconcile(root, data_root)
        holes = _compact(root, data_root, rec.passed)
        areas = expire_pruned(root, retention_days=pruned_retention_days, purge=purge_pruned,
                              now=now)
        before = _size(db)
        if db.exists():
            conn = sqlite3.connect(db, timeout=30)
            try:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                conn.execute("VACUUM")
            finally:
                conn.close()
        after = _size(db)
        empties = 0
        if rm_empty:
            layout = DatasetLayout(root)
            empties = sum(_remove_empty_dirs(d) for d in (layout.chips, layout.ais))
    rep = VacuumReport(before, after, rec.cube_rows_dropped, rec.files_removed,
                       rec.temp_files_removed, empties, areas, holes)
    log.info("vacuum %s: %s", root, rep)
    return rep


def _counts(s: pd.Series) -> dict[str, int]:
    return {str(k): int(v) for k, v in s.value_counts(dropna=False).sort_index().items()}


def build_manifest(root: str | Path, *, n_samples: int = 5) -> dict[str, Any]:
    """The dataset manifest: counts (chips, passed, by split / tile / ship type / QA reason),
    time range, the files a consumer opens, and ``n_samples`` sample chips. Reads only."""
    root = Path(root)
    layout = DatasetLayout(root)
    idx = read_index(root)
    passed = idx.loc[idx["qa_pass"].astype(bool)] if len(idx) else idx
    try:
        version = importlib.metadata.version("s2xr")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - source checkout
        version = "unknown"
    times = pd.to_datetime(passed["scene_datetime"], utc=True) if len(passed) else None
    sample_cols = ["chip_id", "path", "mmsi", "scene_id", "scene_datetime", "split", "lat",
                   "lon", "tile_id"]
    samples = passed.head(n_samples)[sample_cols].copy() if len(passed) else pd.DataFrame()
    if len(samples):
        samples["scene_datetime"] = pd.to_datetime(samples["scene_datetime"], utc=True).map(
            lambda t: t.isoformat().replace("+00:00", "Z"))
    rejected = idx.loc[~idx["qa_pass"].astype(bool)] if len(idx) else idx
    return {
        "name": root.resolve().name,
        "created_utc": pd.Timestamp.now(tz="UTC").isoformat().replace("+00:00", "Z"),
        "s2xr_version": version,
        "counts": {
            "chips_cut": len(idx), "chips_passed": len(passed),
            "ships": int(passed["mmsi"].nunique()) if len(passed) else 0,
            "scenes": int(passed["scene_id"].nunique()) if len(passed) else 0,
            "by_split": _counts(passed["split"]) if len(passed) else {},
            "by_tile": _counts(passed["tile_id"]) if len(passed) else {},
            "by_ship_type": _counts(passed["ship_type"].astype("Int64").astype(str))
            if len(passed) else {},
            "rejected_by_reason": _counts(rejected["qa_reason"].astype(str).str.split(";")
                                          .str[0]) if len(rejected) else {},
        },
        "time_range_utc": [times.min().isoformat().replace("+00:00", "Z"),
                           times.max().isoformat().replace("+00:00", "Z")]
        if times is not None else None,
        "providers": sorted(map(str, passed["provider"].dropna().unique())) if len(passed)
        else [],
        "files": {name: str(p.relative_to(root)) for name, p in (
            ("index", layout.index), ("cube", layout.cube),
            ("stac_catalog", layout.stac_catalog), ("qa_report", layout.qa_report))
            if p.exists()},
        "samples": json.loads(samples.to_json(orient="records")) if len(samples) else [],
    }


def write_manifest(root: str | Path, *, n_samples: int = 5) -> tuple[Path, dict[str, Any]]:
    """Write ``{root}/manifest.json`` atomically; returns (path, manifest)."""
    root = Path(root)
    manifest = build_manifest(root, n_samples=n_samples)
    path = DatasetLayout(root).manifest
    atomic_write_text(path, json.dumps(manifest, indent=2) + "\n")
    return path, manifest


def vacuum_summary(rep: VacuumReport) -> dict[str, int]:
    return asdict(rep)
