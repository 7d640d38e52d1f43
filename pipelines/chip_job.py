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
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.scheduler import use_scheduler
from s2xr.ais import position_at, read_ais_table
from s2xr.ais.fixtime import fix_times
from s2xr.ais.mmsi import parse_mmsi
from s2xr.chips import cut_chips, plan_chips
from s2xr.config import Config
from s2xr.errors import StacError
from s2xr.gate import gate_chips
from s2xr.labels import attach_ship_mask, label_chips, ship_states
from s2xr.ops import JobStore, connect
from s2xr.ops.jobs import Clock
from s2xr.scenes import (
    ItemSource,
    candidate_targets,
    items_table,
    reflectance_params,
    search_scenes,
    stack_by_epsg,
)
from s2xr.splits import assign_splits
from s2xr.store import write_chips
from s2xr.store.consistency import dataset_lock, reconcile
from s2xr.store.index import read_index
from s2xr.store.layout import atomic_write, ensure_writable
from s2xr.store.writer import limit_malloc_arenas, release_free_memory

log = logging.getLogger(__name__)

STATIC_COLUMNS = ("ship_type", "length", "beam", "ship_name", "provider", "source",
                  "to_bow", "to_stern", "to_port", "to_starboard", "overpass_time")


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


def _static_per_ship(points: pd.DataFrame) -> pd.DataFrame:
    cols = [c for c in STATIC_COLUMNS if c in points and c != "overpass_time"]
    if not cols:
        return pd.DataFrame(index=pd.Index([], name="mmsi"))
    return points.groupby("mmsi")[cols].last()


def position_targets(points: pd.DataFrame, targets: pd.DataFrame, *, max_extrapolation_s: float,
                     max_gap_s: float) -> pd.DataFrame:
    """Targets + lat, lon (at sensing time), ais_time, gap_s, method, uncertainty_m, reason,
    and the ships' static columns. Timed targets are interpolated along their tracks
    (:func:`s2xr.ais.position_at`); points without time keep their position."""
    if targets.empty:
        return targets.assign(lat=[], lon=[], ais_time=[], gap_s=[], method=[],
                              uncertainty_m=[], reason=[])
    timed = ~targets["target_key"].astype(str).str.startswith("p")
    out = targets.copy()
    for c, v in (("lat", np.nan), ("lon", np.nan), ("ais_time", pd.NaT), ("gap_s", np.nan),
                 ("method", None), ("uncertainty_m", np.nan), ("reason", None)):
        out[c] = v
    out["ais_time"] = pd.to_datetime(out["ais_time"], utc=True)
    if timed.any():
        has_time = points["time"].notna()
        # every fix usually has a time (fix_times): then no copy of the points
        tracks = points if has_time.all() else points.loc[has_time]
        del has_time
        pos = position_at(tracks, out.loc[timed, ["mmsi", "time"]],
                          max_extrapolation_s=max_extrapolation_s, max_gap_s=max_gap_s)
        for c in ("lat", "lon", "ais_time", "gap_s", "method", "uncertainty_m", "reason"):
            out.loc[timed, c] = pos[c].to_numpy()
    if (~timed).any():
        rows = out.loc[~timed, "row"].to_numpy()
        out.loc[~timed, "lat"] = points["lat"].to_numpy()[rows]
        out.loc[~timed, "lon"] = points["lon"].to_numpy()[rows]
        out.loc[~timed, "method"] = "static"
    static = _static_per_ship(points)
    out = out.join(static, on="mmsi")
    if "overpass_time" in points:
        first = points.groupby("mmsi")["overpass_time"].first()
        out["overpass_time"] = out["mmsi"].map(first)
    return out


def split_usable_items(items: list[dict[str, Any]], bands: tuple[str, ...]
                       ) -> tuple[list[dict[str, Any]], pd.DataFrame]:
    """(items with every band asset, rejects naming the items and bands missing)."""
    ok, bad = [], []
    for it in items:
        missing = [b for b in bands if b not in it.get("assets", {})]
        if missing:
            log.warning("item %s lacks band(s) %s: skipped", it["id"], missing)
            bad.append({"row": pd.NA, "mmsi": pd.NA, "item_id": it["id"], "stage": "search",
                        "reason": f"item lacks band asset(s) {missing}"})
        else:
            ok.append(it)
    return ok, pd.DataFrame(bad, columns=["row", "mmsi", "item_id", "stage", "reason"])


def _item_meta(items: list[dict[str, Any]], bands: tuple[str, ...],
               resampling: str) -> dict[str, Any]:
    meta = {}
    for it in items:
        meta[it["id"]] = {
            "hrefs": {b: it["assets"][b]["href"] for b in (*bands, "scl")},
            "scale_offset": {b: list(reflectance_params(it, b)) for b in bands},
            "resampling": {"10m": "none", "20m": resampling, "scl": "nearest"},
        }
    return meta


REJECT_SCHEMA = pa.schema([
    ("row", pa.int64()), ("mmsi", pa.int64()), ("value", pa.string()),
    ("item_id", pa.string()), ("stage", pa.string()), ("reason", pa.string()),
    ("recorded_at", pa.timestamp("us", tz="UTC")),
])


def typed_rejects(df: pd.DataFrame) -> pa.Table:
    """``rejects.parquet`` rows with the fixed :data:`REJECT_SCHEMA`, whatever the input
    held: ``mmsi`` is an int64 only when it is a valid MMSI (the one rule of
    :func:`s2xr.ais.mmsi.parse_mmsi`; else null, and the raw text goes to ``value`` if that
    is empty), ``row`` an int64, the rest text."""
    n = len(df)

    def col(name: str) -> pd.Series:
        return df[name] if name in df else pd.Series([None] * n, index=df.index, dtype=object)

    raw_mmsi = col("mmsi").astype(object)
    nums = [parse_mmsi(v) for v in raw_mmsi]
    ok = pd.Series([v is not None for v in nums], index=df.index, dtype=bool)
    value = col("value").astype(object)
    bad_raw = ~ok & raw_mmsi.notna()
    value = value.where(value.notna() | ~bad_raw, raw_mmsi.astype(str))

    def text(s: pd.Series) -> list[str | None]:
        return [None if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA
                else str(v) for v in s.astype(object)]

    rows = pd.to_numeric(col("row"), errors="coerce")
    recorded = pd.to_datetime(col("recorded_at"), utc=True, errors="coerce")
    return pa.table({
        "row": pa.array([None if pd.isna(v) else int(v) for v in rows], pa.int64()),
        "mmsi": pa.array(nums, pa.int64()),
        "value": pa.array(text(value), pa.string()),
        "item_id": pa.array(text(col("item_id")), pa.string()),
        "stage": pa.array(text(col("stage")), pa.string()),
        "reason": pa.array(text(col("reason")), pa.string()),
        "recorded_at": pa.array(recorded.dt.tz_convert("UTC"), pa.timestamp("us", tz="UTC")),
    }, schema=REJECT_SCHEMA)


def read_rejects(root: Path) -> pd.DataFrame:
    """``indexes/rejects.parquet`` as a DataFrame with the fixed schema (empty if none)."""
    path = root / "indexes" / "rejects.parquet"
    if not path.exists():
        return REJECT_SCHEMA.empty_table().to_pandas(types_mapper=pd.ArrowDtype)
    return typed_rejects(pd.read_parquet(path)).to_pandas(types_mapper=pd.ArrowDtype)


def _write_rejects(root: Path, rejects: pd.DataFrame) -> None:
    """Append the job's rejects to ``indexes/rejects.parquet`` with the fixed schema (an
    older or foreign file is coerced to it, never allowed to change a column's type)."""
    if rejects.empty:
        return
    path = root / "indexes" / "rejects.parquet"
    new = typed_rejects(rejects.assign(recorded_at=pd.Timestamp.now(tz="UTC")))
    full = pa.concat_tables([typed_rejects(pd.read_parquet(path)), new]) if path.exists() \
        else new
    df = full.to_pandas(types_mapper=pd.ArrowDtype)
    keys = ["mmsi", "item_id", "stage", "reason", "row"]
    keep = ~df.astype({k: object for k in keys}).duplicated(keys, keep="last").to_numpy()
    full = full.filter(pa.array(keep))
    atomic_write(path, lambda p: pq.write_table(full, p))


def limit_plan(plan: pd.DataFrame, existing: pd.DataFrame, *, max_chips: int | None = None,
               one_chip_per_ship: bool = False) -> pd.DataFrame:
    """The new chips to cut under the run's limits (plan order kept; deterministic).

    ``one_chip_per_ship``: per MMSI the row with the smallest ``|dt_seconds|`` (ties: the
    chip_id), none for vessels that already have a passed chip in ``existing``;
    ``max_chips``: the first that many rows."""
    out = plan
    if one_chip_per_ship and len(out):
        have = set(existing.loc[existing["qa_pass"].astype(bool), "mmsi"]) if len(existing) \
            else set()
        cand = out.loc[~out["mmsi"].isin(have)]
        order = cand.assign(_adt=cand["dt_seconds"].abs().fillna(np.inf)).sort_values(
            ["mmsi", "_adt", "chip_id"], kind="stable")
        keep = set(order.drop_duplicates("mmsi")["chip_id"])
        out = out.loc[out["chip_id"].isin(keep)]
    if max_chips is not None and len(out) > max_chips:
        out = out.head(max_chips)
    if len(out) < len(plan):
        log.info("run limits: %d of %d planned chip(s) kept", len(out), len(plan))
    return out.reset_index(drop=True)


def db_path(cfg: Config) -> Path:
    """The ops DB of the dataset (``ops.db_path`` or ``{storage.root}/ops.sqlite``)."""
    return Path(cfg.ops.db_path) if cfg.ops.db_path else Path(cfg.storage.root) / "ops.sqlite"


def record_observations(store: JobStore, points: pd.DataFrame, run_id: str,
                        targets: pd.DataFrame | None = None, *,
                        chips: pd.DataFrame | None = None, window_s: float = 1800.0) -> int:
    """Append to ``ais_observations`` the fixes the run's chips depend on (duplicates
    ignored) → the number of fixes offered.

    Per target (a ship an item sees: ``mmsi``, ``item_id`` and the sensing ``time``, as
    :func:`position_targets` returns them; only those with a row in ``chips``, the plan,
    when given) the ship's fixes within ±``window_s`` of the sensing time, plus the last fix
    before and the first after it (the fixes it is positioned from, however far); for a
    point without time (``target_key`` 'p<row>', ``row`` its position in ``points``) that
    point. ``targets=None``: every point. The rest of the file stays where
    ``chip_jobs.ais_source`` says. Prune without ``--ais`` reads these fixes: enough for
    ``--time-tol-min`` up to ``window_s`` / 60."""
    if targets is not None and chips is not None:
        pairs = chips[["mmsi", "item_id"]].drop_duplicates() if len(chips) else \
            pd.DataFrame({"mmsi": pd.Series(dtype="int64"), "item_id": pd.Series(dtype=str)})
        targets = targets.merge(pairs.astype({"mmsi": "int64"}),
                                on=["mmsi", "item_id"], how="inner") if len(targets) else targets
    if targets is None:
        sel = np.arange(len(points))
    else:
        keep = np.zeros(len(points), bool)
        if len(points) and len(targets):
            t = pd.to_datetime(points["time"], utc=True)
            ns = t.to_numpy("datetime64[ns]").view("int64")
            m = points["mmsi"].to_numpy().astype("int64")
            has_t = np.flatnonzero(t.notna().to_numpy())
            order = has_t[np.lexsort((ns[has_t], m[has_t]))]
            sm, st = m[order], ns[order]
            key = targets["target_key"].astype(str) if "target_key" in targets else \
                pd.Series("", index=targets.index)
            static = key.str.startswith("p").to_numpy()
            if "row" in targets and static.any():
                rows = pd.to_numeric(targets.loc[static, "row"], errors="coerce").dropna()
                keep[rows.to_numpy().astype("int64")] = True
            tt = pd.to_datetime(targets["time"], utc=True)
            timed = ~static & tt.notna().to_numpy()
            q = pd.DataFrame({"m": targets["mmsi"].to_numpy()[timed].astype("int64"),
                              "t": tt.to_numpy("datetime64[ns]").view("int64")[timed]}
                             ).drop_duplicates()
            a = np.searchsorted(sm, q["m"].to_numpy(), "left")
            b = np.searchsorted(sm, q["m"].to_numpy(), "right")
            w = int(window_s * 1e9)
            mark = np.zeros(sm.size + 1, np.int64)  # +1 at a range start, −1 after its end
            for lo_blk, hi_blk, tq in zip(a, b, q["t"].to_numpy(), strict=True):
                seg = st[lo_blk:hi_blk]
                lo = lo_blk + np.searchsorted(seg, tq - w, "left")
                hi = lo_blk + np.searchsorted(seg, tq + w, "right")
                after = lo_blk + np.searchsorted(seg, tq, "right")  # first fix after tq
                lo = min(lo, max(after - 1, lo_blk))
                hi = max(hi, min(after + 1, hi_blk))
                if hi > lo:
                    mark[lo] += 1
                    mark[hi] -= 1
            keep[order[np.cumsum(mark[:-1]) > 0]] = True
        sel = np.flatnonzero(keep)
    cols = ["mmsi", "time", "lat", "lon", "sog", "cog", "heading", "ship_type", "length",
            "beam", "ship_name", "source", "provider"]
    sub = points.iloc[sel]
    df = pd.DataFrame({c: sub[c].to_numpy() if c in sub else None for c in cols})
    df["time"] = pd.to_datetime(df["time"], utc=True).map(
        lambda t: None if pd.isna(t) else t.isoformat())
    df = df.astype(object).where(df.notna(), None)
    rows_out = [(*r, run_id) for r in df.itertuples(index=False)]
    with connect(store.path) as c, c:
        c.executemany(f"INSERT OR IGNORE INTO ais_observations ({', '.join(cols)}, run_id) "
                      f"VALUES ({', '.join('?' * (len(cols) + 1))})", rows_out)
    return len(rows_out)


def run_chip_job(cfg: Config, ais: str | Path | pd.DataFrame, *,
                 source: ItemSource | None = None, start: pd.Timestamp | None = None,
                 end: pd.Timestamp | None = None,
                 progress: Callable[[int, int], None] | None = None,
                 clock: Clock | None = None,
                 only_mmsi: set[int] | None = None,
                 max_chips: int | None = None,
                 one_chip_per_ship: bool = False,
                 should_stop: Callable[[], bool] | None = None) -> ChipJobResult:
    """Run the whole chip job for an AIS table (path or DataFrame). Computes and writes.

    Holds the dataset lock (a second concurrent run is refused), repairs what a crash left
    (:func:`~s2xr.store.consistency.reconcile`), and records every attempt in the ops DB:
    chips end ``done``, ``rejected`` (gate reason) or ``failed`` (read error, retried with
    back-off); points without a scene ``no_scene``; a STAC outage ``deferred``.

    Limits: ``one_chip_per_ship`` keeps one chip per vessel (the scene whose AIS fix is
    nearest in time; vessels already in the dataset get none), ``max_chips`` at most that
    many new chips. ``should_stop()`` is checked after every written block.
    """
    root = Path(cfg.storage.root)
    ensure_writable(root)
    with dataset_lock(root, reentrant=True):
        reconcile(root)
        store = JobStore(db_path(cfg), cfg.ops, clock)
        store.recover()
        run_id = store.start_run("chip")
        try:
            res = _run_chip_job(cfg, ais, store, run_id, source=source, start=start, end=end,
                                progress=progress, only_mmsi=only_mmsi,
                                max_chips=max_chips, one_chip_per_ship=one_chip_per_ship,
                                should_stop=should_stop)
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


def _mark_chip_jobs(store: JobStore, index: pd.DataFrame, chip_ids: set[str]) -> None:
    rows = index.loc[index["chip_id"].isin(chip_ids)]
    ok = rows["qa_pass"].astype(bool)
    read_err = rows["qa_reason"].astype(str).str.startswith("read_error")
    store.mark(rows.loc[ok, "chip_id"], "done")
    store.mark(rows.loc[~ok & read_err, "chip_id"], "failed",
               reasons=dict(zip(rows["chip_id"], rows["qa_reason"], strict=True)))
    store.mark(rows.loc[~ok & ~read_err, "chip_id"], "rejected",
               reasons=dict(zip(rows["chip_id"], rows["qa_reason"], strict=True)))


def _day_keys(points: pd.DataFrame) -> pd.Series:
    """``YYYYMMDD`` (UTC) of each point's time, ``any`` without one."""
    if "time" not in points:
        return pd.Series("any", index=points.index)
    t = pd.to_datetime(points["time"], utc=True)
    return t.dt.strftime("%Y%m%d").fillna("any")


def _close_deferred(store: JobStore, searched: pd.DataFrame, run_id: str) -> None:
    """Close the deferred jobs of the ship-days this run searched successfully: their chips
    now have jobs of their own, so the deferral is done (not due for another retry)."""
    if searched.empty:
        return
    keys = pd.DataFrame({"mmsi": searched["mmsi"], "day": _day_keys(searched)}).drop_duplicates()
    ids = "defer|" + keys["mmsi"].astype(str) + "|" + keys["day"]
    store.close(ids, from_states=("deferred", "failed", "pending", "running"),
                reason=f"search succeeded in run {run_id}")


def _defer(store: JobStore, points: pd.DataFrame, run_id: str, ais_source: str | None,
           reason: str) -> int:
    keys = pd.DataFrame({"mmsi": points["mmsi"], "day": _day_keys(points)}).drop_duplicates()
    jobs = pd.DataFrame({"job_id": "defer|" + keys["mmsi"].astype(str) + "|" + keys["day"],
                         "mmsi": keys["mmsi"], "item_id": None,
                         "scene_datetime": pd.Timestamp.now(tz="UTC"), "chip_id": None})
    store.register(jobs, run_id, ais_source)
    store.mark(jobs["job_id"], "deferred", reason)
    return len(jobs)


def _run_chip_job(cfg: Config, ais: str | Path | pd.DataFrame, store: JobStore, run_id: str,
                  *, source: ItemSource | None, start: pd.Timestamp | None,
                  end: pd.Timestamp | None, progress: Callable[[int, int], None] | None,
                  only_mmsi: set[int] | None, max_chips: int | None = None,
                  one_chip_per_ship: bool = False,
                  should_stop: Callable[[], bool] | None = None) -> ChipJobResult:
    root = Path(cfg.storage.root)
    ais_source = str(Path(ais).resolve()) if isinstance(ais, str | Path) else None
    limit_malloc_arenas()  # the reader's, search's and writer's threads share 2 arenas
    table = read_ais_table(ais)
    points = table.points
    if only_mmsi is not None:
        points = points.loc[points["mmsi"].isin(only_mmsi)]
    points = fix_times(points)  # a fix without its own time: its scheduled overpass time
    rej = [table.rejects.assign(stage="ais", item_id=None, mmsi=table.rejects.get("mmsi"),
                                value=table.rejects.get("value"))
           [["row", "mmsi", "value", "item_id", "stage", "reason"]] if len(table.rejects) else
           pd.DataFrame(columns=["row", "mmsi", "item_id", "stage", "reason"])]
    log.info("AIS: %d valid point(s) of %d ship(s), %d rejected row(s)", len(points),
             points["mmsi"].nunique(), len(table.rejects))
    del table  # only ``points`` (and the rejects above) from here: no second copy alive
    # positional row labels without copying the columns (reset_index copies them all)
    points = points.set_axis(pd.RangeIndex(len(points)), copy=False)
    release_free_memory()  # the reader's and fix_times' freed memory back to the OS
    try:
        search = search_scenes(points, cfg.stac, source, start=start, end=end,
                               errors="collect")
    except StacError as exc:
        n = _defer(store, points, run_id, ais_source, f"STAC unavailable: {exc}")
        log.error("STAC unavailable: %d job(s) deferred, retried with back-off "
                  "(`s2xr ops retry`): %s", n, exc)
        rejects = pd.concat(rej)
        _write_rejects(root, rejects)
        return ChipJobResult(root=root, n_points=len(points), n_items=0, n_searches=0,
                             n_planned=0, n_skipped_existing=0, n_chips=0, n_passed=0,
                             rejects=rejects, n_deferred=n,
                             index_rows=len(read_index(root)))
    release_free_memory()
    n_deferred = 0
    failed_rows = search.failed_rows
    if failed_rows:
        # only the ship-days whose search failed wait for a retry; the others go on
        n_deferred = _defer(store, points.loc[failed_rows], run_id, ais_source,
                            "STAC search failed: " + str(search.failed["error"].iloc[0]))
        log.error("%d of %d search(es) failed: %d job(s) deferred, retried with back-off "
                  "(`s2xr ops retry`)", len(search.failed), len(search.groups), n_deferred)
        # the searched points only (no copy of the points when every search succeeded)
        points = points.drop(index=failed_rows).reset_index(drop=True)
    _close_deferred(store, points, run_id)
    n_points, n_searches = len(points), len(search.groups)
    bands = cfg.chip.all_bands
    usable, bad_items = split_usable_items(search.items, (*bands, "scl"))
    del search  # its groups hold every point's row label
    rej.append(bad_items)
    items_df = items_table(usable, bands=(*bands, "scl"))
    targets, unmatched = candidate_targets(points, items_df, cfg.stac.window_hours)
    rej.append(unmatched.assign(stage="search", item_id=None))
    release_free_memory()
    positioned = position_targets(points, targets,
                                  max_extrapolation_s=cfg.ais.max_extrapolation_s,
                                  max_gap_s=cfg.ais.max_interpolation_gap_s)
    cplan = plan_chips(positioned, items_df, cfg.chip)
    record_observations(store, points, run_id, positioned, chips=cplan.plan)  # their fixes
    rej.append(cplan.rejects.assign(stage="plan", row=pd.NA))
    plan = cplan.plan
    n_planned = len(plan)
    existing_index = read_index(root)
    # chips whose read failed and whose job is still retryable are cut again (the new index
    # row replaces the old one); every other indexed chip is skipped
    unread = existing_index.loc[existing_index["qa_reason"].astype(str)
                                .str.startswith("read_error"), "chip_id"]
    retry = set(unread) & set(store.jobs(states=("failed",))["chip_id"].dropna())
    existing = set(existing_index["chip_id"]) - retry
    store.register(cplan.plan.assign(job_id=cplan.plan["chip_id"]), run_id, ais_source)
    _mark_chip_jobs(store, existing_index, set(cplan.plan["chip_id"]) & existing)
    if len(unmatched):
        # one job per ship and day, the same id in every run (re-runs add no rows)
        u = unmatched.assign(day=_day_keys(points.loc[unmatched["row"].to_numpy()])
                             .to_numpy()).drop_duplicates(["mmsi", "day"])
        ids = "noscene|" + u["mmsi"].astype(str) + "|" + u["day"]
        store.register(pd.DataFrame({"job_id": ids, "mmsi": u["mmsi"], "item_id": None,
                                     "scene_datetime": pd.Timestamp.now(tz="UTC"),
                                     "chip_id": None}), run_id, ais_source)
        store.mark(ids, "no_scene", reasons=dict(zip(ids, u["reason"].astype(str),
                                                     strict=True)))
    plan = plan.loc[~plan["chip_id"].isin(existing)].reset_index(drop=True)
    n_skip = n_planned - len(plan)
    if n_skip:
        log.info("%d chip(s) already in the dataset: skipped", n_skip)
    plan = limit_plan(plan, existing_index, max_chips=max_chips,
                      one_chip_per_ship=one_chip_per_ship)
    plan["split"] = assign_splits(plan, cfg.splits).to_numpy() if len(plan) else []
    used = [it for it in usable if it["id"] in set(plan["item_id"])]
    n_chips = n_passed = 0
    sched_label = ""
    if len(plan):
        stacks = stack_by_epsg(used, bands, resolution=cfg.chip.resolution,
                               resampling=cfg.chip.resampling, engine=cfg.stac.engine)
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
                    progress(done[0], total)

            summary = write_chips(gated, plan, cfg.storage, cfg.gate,
                                  item_meta=_item_meta(used, bands, cfg.chip.resampling),
                                  block_size=cfg.storage.block_size, progress=tick,
                                  labels=labels, should_stop=should_stop)
        n_chips, n_passed = summary.n_chips, summary.n_passed
        idx = summary.index
        _mark_chip_jobs(store, idx, set(plan["chip_id"]))
        gate_rej = idx.loc[idx["chip_id"].isin(plan["chip_id"]) & ~idx["qa_pass"].astype(bool)]
        rej.append(pd.DataFrame({"row": pd.NA, "mmsi": gate_rej["mmsi"],
                                 "item_id": gate_rej["scene_id"], "stage": "gate",
                                 "reason": gate_rej["qa_reason"]}))
    rejects = pd.concat([r for r in rej if len(r)], ignore_index=True) if any(
        len(r) for r in rej) else pd.DataFrame(columns=["row", "mmsi", "item_id", "stage",
                                                          "reason"])
    _write_rejects(root, rejects)
    index_rows = len(read_index(root))
    return ChipJobResult(
        root=root, n_points=n_points, n_items=len(used), n_searches=n_searches,
        n_planned=n_planned, n_skipped_existing=n_skip, n_chips=n_chips, n_passed=n_passed,
        rejects=rejects, scheduler=sched_label, index_rows=index_rows, n_deferred=n_deferred,
        outputs={"index": root / "indexes" / "tiles.parquet", "cube": root / "chips.zarr",
                 "chips": root / "chips", "rejects": root / "indexes" / "rejects.parquet",
                 "labels": root / "indexes" / "labels.parquet"})
