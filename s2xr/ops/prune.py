"""Prune chips whose AIS record is missing or beyond tolerance — recoverably.

Safety rules (a prune once removed a whole dataset because its AIS file kept the time in a
column prune did not read):

* the AIS time of a fix follows :func:`s2xr.ais.fixtime.fix_times`, the rule the chip job
  uses (``time`` and its aliases, else ``overpass_time``); a table with no fix time at all
  is an error, not "no AIS fix" for every chip;
* a prune removing more than ``max_share`` of the dataset's chips (``ops.prune_max_share``,
  default 20 %) is refused unless forced; a dry run still lists them;
* nothing is deleted: the chips' files, index rows and cube rows are first copied (hard
  links for files) to ``{root}/pruned/YYYYMMDDTHHMMSS/``, which :func:`unprune`
  (``s2xr prune --undo DIR``) puts back and ``s2xr vacuum`` empties after
  ``ops.pruned_retention_days``.

Order (crash-safe): the area is written as ``….partial`` and renamed when complete; only
then is the index rewritten (atomically); :func:`~s2xr.store.consistency.reconcile` then
drops the cube rows and files it no longer names (the area keeps its links) and the daily
footprints are rewritten. A crash before the rename leaves the dataset as it was (and a
``.partial`` area vacuum removes); after it, the next reconcile finishes the job.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import xarray as xr
from pyproj import Geod

from s2xr.ais import position_at, read_ais_table
from s2xr.ais.fixtime import fix_times
from s2xr.ais.schema import canonical_columns
from s2xr.errors import InputError
from s2xr.ops.observations import ObservationStore
from s2xr.store.consistency import reconcile
from s2xr.store.cube import append_cube, consolidate, open_chips
from s2xr.store.index import merge_index, read_index, write_daily_footprints
from s2xr.store.layout import DatasetLayout, atomic_write, atomic_write_text
from s2xr.store.objects import has_zarr
from s2xr.store.slots import CHIPS_PER_CHUNK, drop_stored_encoding

log = logging.getLogger(__name__)
GEOD = Geod(ellps="WGS84")

DEFAULT_MAX_SHARE = 0.2
PRUNED_DIR = DatasetLayout.PRUNED  # {root}/pruned/YYYYMMDDTHHMMSS/ — one area per prune
AREA_TIME_FORMAT = "%Y%m%dT%H%M%S"  # UTC
PARTIAL_SUFFIX = ".partial"
# an area: its manifest and index rows (DatasetLayout.area_manifest / area_index), and the
# removed cube rows and chip files where a dataset keeps them (DatasetLayout(area).cube/.chips)


class PruneRefusedError(InputError):
    """A prune would remove more than the allowed share of the dataset's chips."""

    def __init__(self, message: str, result: PruneResult) -> None:
        super().__init__(message)
        self.result = result


def _pct(x: float) -> str:
    return f"{x * 100:.3g} %"


@dataclass
class PruneResult:
    """What a prune found (``doomed``: index rows + ``prune_reason``) and did."""

    doomed: pd.DataFrame
    n_chips: int  # index rows before the prune
    max_share: float
    dry_run: bool
    area: Path | None = None  # the pruned/ area holding what was removed

    def __len__(self) -> int:
        return len(self.doomed)

    @property
    def share(self) -> float:
        return len(self.doomed) / self.n_chips if self.n_chips else 0.0

    @property
    def refusal(self) -> str | None:
        """Why a prune of these chips is refused without force (None: it is not)."""
        return self.refusal_message()

    def refusal_message(self, *, check: str = "with --dry-run",
                        force: str = "pass --force to remove them anyway") -> str | None:
        """:attr:`refusal`, naming the caller's way to ``check`` and to ``force``."""
        if self.share <= self.max_share:
            return None
        return (f"refusing to prune {len(self.doomed)} of {self.n_chips} chips "
                f"({_pct(self.share)}): more than ops.prune_max_share ({_pct(self.max_share)}) "
                f"of the dataset; check the AIS file (its time columns, its ships) {check}, "
                f"or {force}")


def find_prunable(index: pd.DataFrame, observations: pd.DataFrame, *, time_tol_min: float,
                  dist_tol_m: float) -> pd.DataFrame:
    """Chips (index rows) to prune with a ``prune_reason``: no AIS fix of the ship within
    ``time_tol_min`` of the sensing time, or the ship's position at sensing time (from those
    fixes) more than ``dist_tol_m`` from the chip centre. A fix's time follows
    :func:`~s2xr.ais.fixtime.fix_times`. Raises ``InputError`` when the observations have
    rows but none has a fix time. Pure."""
    obs = fix_times(canonical_columns(observations))
    if len(obs) and ("time" not in obs or obs["time"].isna().all()):
        raise InputError(
            f"the AIS table has {len(obs)} row(s) but no fix time (columns "
            f"{list(observations.columns)[:12]}); prune reads time, timestamp, BaseDateTime, "
            "captured_time or overpass_time — name the time column one of those")
    if index.empty:
        return index.assign(prune_reason=[])
    obs = obs.loc[obs["time"].notna()].copy()
    obs["time"] = pd.to_datetime(obs["time"], utc=True)
    obs["mmsi"] = pd.to_numeric(obs["mmsi"], errors="coerce")
    when = pd.to_datetime(index["scene_datetime"], utc=True)
    tol = pd.Timedelta(minutes=time_tol_min)
    reasons = np.full(len(index), None, dtype=object)
    by_ship = dict(tuple(obs.groupby("mmsi")))
    near_rows = []
    for k, (mmsi, t) in enumerate(zip(index["mmsi"], when, strict=True)):
        fixes = by_ship.get(mmsi)
        if fixes is None or not ((fixes["time"] - t).abs() <= tol).any():
            reasons[k] = f"no AIS fix within {time_tol_min:g} min of the sensing time"
        else:
            near_rows.append(k)
    if near_rows:
        sub = index.iloc[near_rows]
        pos = position_at(obs, pd.DataFrame({"mmsi": sub["mmsi"].to_numpy(),
                                             "time": when.iloc[near_rows].to_numpy()}),
                          max_extrapolation_s=time_tol_min * 60,
                          max_gap_s=max(time_tol_min * 120, 1800))
        _, _, dist = GEOD.inv(sub["lon"].to_numpy(), sub["lat"].to_numpy(),
                              np.nan_to_num(pos["lon"].to_numpy(float)),
                              np.nan_to_num(pos["lat"].to_numpy(float)))
        for j, k in enumerate(near_rows):
            if pd.isna(pos["lat"].iloc[j]):
                reasons[k] = f"no AIS position at sensing time ({pos['reason'].iloc[j]})"
            elif dist[j] > dist_tol_m:
                reasons[k] = f"AIS position {dist[j]:.0f} m from the chip centre " \
                             f"(tolerance {dist_tol_m:g} m)"
    out = index.assign(prune_reason=reasons)
    return out.loc[out["prune_reason"].notna()]


def load_observations(layout: DatasetLayout, ais_path: str | Path | None = None
                      ) -> pd.DataFrame:
    """The AIS fixes to prune against: ``ais_path`` read like any AIS file, else the
    dataset's AIS observations (:class:`~s2xr.ops.observations.ObservationStore`: the
    capture's positions and the fixes the chip jobs used)."""
    if ais_path is not None:
        return read_ais_table(ais_path).points
    store = ObservationStore(layout)
    if not store.exists():
        raise InputError(f"no AIS observations at {layout.ais_observations} yet: pass --ais "
                         "FILE (or run a chip job first)")
    return store.read()


# ------------------------------------------------------------------------------ the area
def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:  # another file system, or links not supported
        shutil.copy2(src, dst)


def _chip_files(chips_dir: Path, ids: set[str]) -> list[Path]:
    """The files of these chips under ``chips_dir``: those :func:`reconcile` would remove
    once the index no longer names them (the file's stem is the chip id)."""
    if not chips_dir.exists() or not ids:
        return []
    return sorted(p for p in chips_dir.rglob("*") if p.is_file() and p.stem in ids)


def _new_area(root: Path, now: pd.Timestamp) -> tuple[Path, Path]:
    """(partial dir, final dir) of a new area named by ``now`` (UTC), unique."""
    base = DatasetLayout(root).pruned
    base.mkdir(parents=True, exist_ok=True)
    stamp = now.tz_convert("UTC").strftime(AREA_TIME_FORMAT)
    for k in range(1, 1000):
        name = stamp if k == 1 else f"{stamp}-{k}"
        final = base / name
        partial = base / f"{name}{PARTIAL_SUFFIX}"
        if final.exists() or partial.exists():
            continue
        partial.mkdir()
        return partial, final
    raise InputError(f"too many prunes at {stamp} under {base}")


def _rows_of(ds: xr.Dataset, ids: set[str]) -> np.ndarray:
    """Positions along ``chip`` of the chips in ``ids``."""
    return np.flatnonzero([str(c) in ids for c in ds["chip_id"].values])


def _save_cube_rows(root: Path, ids: set[str], dest: Path) -> int:
    cube = DatasetLayout(root).cube
    if not ids or not has_zarr(cube):
        return 0
    ds = open_chips(cube)
    pos = _rows_of(ds, ids)
    if not len(pos):
        return 0
    sel = drop_stored_encoding(ds.isel(chip=pos).chunk({"chip": CHIPS_PER_CHUNK}))
    sel.to_zarr(dest, mode="w-", zarr_format=3, consolidated=False)
    consolidate(dest)
    return len(pos)


def _write_area(root: Path, rows: pd.DataFrame, doomed: pd.DataFrame, *, now: pd.Timestamp,
                time_tol_min: float, dist_tol_m: float) -> Path:
    """Copy what the prune removes into a new area; returns its final path (renamed from
    ``….partial`` once complete)."""
    partial, final = _new_area(root, now)
    layout, area = DatasetLayout(root), DatasetLayout(partial)
    ids = set(map(str, rows["chip_id"]))
    gpd.GeoDataFrame(rows, geometry="geometry", crs="EPSG:4326").to_parquet(
        layout.area_index(partial), index=False)
    n_cube = _save_cube_rows(root, ids, area.cube)
    files = []
    for f in _chip_files(layout.chips, ids):
        rel = f.relative_to(layout.chips)
        _link_or_copy(f, area.chips / rel)
        files.append({"path": str(rel), "bytes": f.stat().st_size})
    manifest = {
        "created_utc": now.tz_convert("UTC").isoformat().replace("+00:00", "Z"),
        "n_chips": len(rows), "chip_ids": sorted(ids),
        "reasons": {str(r.chip_id): str(r.prune_reason) for r in doomed.itertuples()},
        "time_tol_min": time_tol_min, "dist_tol_m": dist_tol_m, "cube_rows": n_cube,
        "files": files, "undo": f"s2xr prune --undo {PRUNED_DIR}/{final.name}",
        "complete": True,
    }
    atomic_write_text(layout.area_manifest(partial), json.dumps(manifest, indent=2) + "\n")
    partial.rename(final)
    return final


def _rewrite_footprints(root: Path, before: pd.DataFrame, after: gpd.GeoDataFrame) -> None:
    days = set(pd.to_datetime(before["scene_datetime"], utc=True).dt.strftime("%Y%m%d"))
    have = set(pd.to_datetime(after["scene_datetime"], utc=True).dt.strftime("%Y%m%d"))
    for day in sorted(days):
        if day in have:
            write_daily_footprints(root, after, day)
        else:
            DatasetLayout(root).footprints(day).unlink(missing_ok=True)


def prune_chips(root: str | Path, observations: pd.DataFrame, *, time_tol_min: float = 10,
                dist_tol_m: float = 500, dry_run: bool = False,
                max_share: float = DEFAULT_MAX_SHARE, force: bool = False,
                now: pd.Timestamp | None = None) -> PruneResult:
    """Find (and unless ``dry_run`` remove) prunable chips. Raises
    :class:`PruneRefusedError` when more than ``max_share`` of the chips would go and not
    ``force``. What is removed is moved to ``{root}/pruned/YYYYMMDDTHHMMSS/``
    (``result.area``). The caller holds the dataset lock."""
    root = Path(root)
    index = read_index(root)
    doomed = find_prunable(index, observations, time_tol_min=time_tol_min,
                           dist_tol_m=dist_tol_m)
    res = PruneResult(doomed=doomed, n_chips=len(index), max_share=max_share,
                      dry_run=dry_run)
    log.info("prune: %d of %d chip(s) %s", len(doomed), len(index),
             "would be removed (dry run)" if dry_run else "to remove")
    if dry_run or doomed.empty:
        return res
    if res.refusal and not force:
        raise PruneRefusedError(res.refusal, res)
    gone = index["chip_id"].isin(doomed["chip_id"])
    res.area = _write_area(root, pd.DataFrame(index.loc[gone]), doomed,
                           now=now or pd.Timestamp.now(tz="UTC"),
                           time_tol_min=time_tol_min, dist_tol_m=dist_tol_m)
    keep = gpd.GeoDataFrame(index.loc[~gone], geometry="geometry", crs="EPSG:4326")
    atomic_write(DatasetLayout(root).index, lambda p: keep.to_parquet(p, index=False))
    reconcile(root)
    _rewrite_footprints(root, index, keep)
    log.warning("prune: removed %d chip(s) to %s (undo: s2xr prune --undo %s)", len(doomed),
                res.area, res.area)
    return res


# ------------------------------------------------------------------------------ undo
def resolve_area(root: str | Path, area: str | Path) -> Path:
    """The pruned area ``area`` names: a path, or one relative to the dataset root."""
    root, area = Path(root), Path(area)
    pruned = DatasetLayout(root).pruned
    for cand in (area, root / area, pruned / area):
        if cand.is_dir():
            return cand
    raise InputError(f"not a pruned area: {area} (expected a directory under "
                     f"{pruned}; `ls {pruned}`)")


def unprune(root: str | Path, area: str | Path) -> gpd.GeoDataFrame:
    """Put back what a prune moved to ``area``: files, cube rows, then index rows (chips
    the index names again meanwhile are skipped), then remove the area. Returns the
    restored index rows. The caller holds the dataset lock."""
    root = Path(root)
    area = resolve_area(root, area)
    layout, saved = DatasetLayout(root), DatasetLayout(area)
    manifest_path = layout.area_manifest(area)
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError):
        manifest = {}
    if not manifest.get("complete") or not layout.area_index(area).is_file():
        raise InputError(f"{area} is not a complete pruned area (no finished "
                         f"{manifest_path.name}): the prune that wrote it stopped before removing "
                         "anything, so there is nothing to undo; `s2xr vacuum` removes it")
    reconcile(root)  # the cube and files hold exactly what the index names
    rows = gpd.read_parquet(layout.area_index(area))
    have = set(read_index(root)["chip_id"])
    restore = rows.loc[~rows["chip_id"].isin(have)]
    ids = set(map(str, restore["chip_id"]))
    for f in _chip_files(saved.chips, ids):
        dst = layout.chips / f.relative_to(saved.chips)
        if not dst.exists():
            _link_or_copy(f, dst)
    cube = saved.cube
    if ids and has_zarr(cube):
        ds = open_chips(cube)
        pos = _rows_of(ds, ids)
        for start in range(0, len(pos), 64):
            part = drop_stored_encoding(ds.isel(chip=pos[start:start + 64]).load())
            append_cube(root, part)
    if len(restore):
        merge_index(root, gpd.GeoDataFrame(restore, geometry="geometry", crs="EPSG:4326"))
    shutil.rmtree(area)
    log.warning("unprune: restored %d chip(s) from %s (%d already in the dataset)",
                len(restore), area, len(rows) - len(restore))
    return restore
