"""Per-tile overpass schedules: predict (tle / esa_plan / backfill / auto), write, query, plot.

A schedule is DataFrame[tile_id, satellite, start_time_utc, end_time_utc, source,
centre_time_utc, relative_orbit, cross_track_km, coverage, plan_id], one row per tile
overpass (times datetime64[ns, UTC]):

* ``start_time_utc``/``end_time_utc`` — the first/last instant the swath covers part of the
  tile footprint, padded by ``overpass_window_minutes`` each side;
* ``source`` — the mode that produced the row: ``tle``, ``esa_plan`` or ``backfill``;
* ``centre_time_utc`` — when the tile centre is abeam (the sensing time to expect);
* ``relative_orbit`` — 1–143 (Int64, NA for backfill filler rows);
* ``cross_track_km`` — tile centre from the ground track, + east on a descending pass;
* ``coverage`` — fraction of the footprint inside the swath;
* ``plan_id`` — the ESA plan segment ID (``49295-1``) or CSV ``file:line`` for esa_plan rows;
  the basis (``tle time of day`` / ``10:30 LST``) for backfill rows without a pass.

On disk (``plan/overpass_schedule.csv``) times are ISO 8601 with ``Z``; the file is read by
:func:`s2xr.ais.schedule.read_schedule` (the AIS collector).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd

from s2xr.config import PlanningConfig
from s2xr.errors import PlanningError, TileError
from s2xr.grid import parse_tile_id
from s2xr.planning.backfill import backfill_passes
from s2xr.planning.esa import EsaPlan, load_esa_plans
from s2xr.planning.esa_tiles import esa_windows
from s2xr.planning.tle import (
    TleSet,
    predict_tle_passes,
    read_tle,
    select_tles,
    warn_tle_age,
)
from s2xr.store.layout import DatasetLayout, atomic_write_text

log = logging.getLogger(__name__)

MODES = ("tle", "esa_plan", "backfill", "auto")
SCHEDULE_COLUMNS = ("tile_id", "satellite", "start_time_utc", "end_time_utc", "source",
                    "centre_time_utc", "relative_orbit", "cross_track_km", "coverage",
                    "plan_id")
TIME_COLUMNS = ("start_time_utc", "end_time_utc", "centre_time_utc")
SCHEDULE_FILE = DatasetLayout(Path()).schedule  # relative to the root


def parse_tiles(tiles: str | Iterable[str]) -> list[str]:
    """Canonical tile IDs ("39QTA") from "T39QTA,30stf" or a list; duplicates dropped.
    Raises :class:`TileError` listing every unknown ID at once."""
    items = tiles.split(",") if isinstance(tiles, str) else list(tiles)
    out, bad = [], []
    for raw in (str(t).strip() for t in items):
        if not raw:
            continue
        try:
            code = parse_tile_id(raw).code
        except TileError as exc:
            bad.append((raw, str(exc)))
            continue
        if code not in out:
            out.append(code)
    if bad:
        raise TileError(f"unknown tile ID(s) {[b[0] for b in bad]}: " +
                        "; ".join(b[1] for b in bad))
    return out


def _utc(t: str | pd.Timestamp) -> pd.Timestamp:
    ts = pd.Timestamp(t)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _empty() -> pd.DataFrame:
    df = pd.DataFrame(columns=list(SCHEDULE_COLUMNS))
    return _types(df)


def _types(df: pd.DataFrame) -> pd.DataFrame:
    for c in TIME_COLUMNS:
        df[c] = pd.to_datetime(df[c], utc=True)
    df["relative_orbit"] = df["relative_orbit"].astype("Int64")
    for c in ("cross_track_km", "coverage"):
        df[c] = df[c].astype(float)
    for c in ("tile_id", "satellite", "source", "plan_id"):
        df[c] = df[c].astype(object)
    return df


def _rows(passes: pd.DataFrame, source: str, pad: pd.Timedelta) -> pd.DataFrame:
    if passes.empty:
        return _empty()
    out = pd.DataFrame({
        "tile_id": passes["tile_id"], "satellite": passes["satellite"],
        "start_time_utc": passes["sensing_start_utc"] - pad,
        "end_time_utc": passes["sensing_end_utc"] + pad, "source": source,
        "centre_time_utc": passes["centre_time_utc"],
        "relative_orbit": passes["relative_orbit"],
        "cross_track_km": passes["cross_track_km"], "coverage": passes["coverage"],
        "plan_id": passes["plan_id"] if "plan_id" in passes else (
            passes["basis"].where(passes["satellite"] == "S2") if "basis" in passes
            else None),
    })
    return _types(out)


def _tle_sets(cfg: PlanningConfig, tles: Sequence[TleSet] | dict[str, TleSet] | None,
              when: pd.Timestamp) -> dict[str, TleSet]:
    sets = list(tles.values()) if isinstance(tles, dict) else (
        list(tles) if tles is not None else read_tle(cfg.tle_path))
    chosen = select_tles(sets, when)
    for sat, t in chosen.items():
        log.info("TLE %s: epoch %s (%s line %d)", sat, f"{t.epoch:%Y-%m-%dT%H:%M:%SZ}",
                 t.source, t.line_no)
    return chosen


def _load_plan(cfg: PlanningConfig, plan: EsaPlan | str | Path | None, required: bool
               ) -> EsaPlan | None:
    if isinstance(plan, EsaPlan):
        return plan
    if plan is not None:
        return load_esa_plans(str(plan))
    try:
        found = load_esa_plans(cfg.esa_plan_path, cfg.esa_plan_urls)
    except PlanningError as exc:
        if required:
            raise
        log.warning("auto: the configured ESA plan cannot be used (%s); falling back to TLE",
                    exc)
        return None
    if found is None and required:
        raise PlanningError("mode esa_plan needs an ESA acquisition plan: set "
                            "planning.esa_plan_path (KML/CSV file or folder) or "
                            "planning.esa_plan_urls, or pass --esa-plan")
    return found


def _gaps(start: pd.Timestamp, end: pd.Timestamp,
          covered: tuple[pd.Timestamp, pd.Timestamp] | None
          ) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    if covered is None:
        return [(start, end)]
    return [(a, b) for a, b in ((start, covered[0]), (covered[1], end)) if a < b]


def predict_overpasses(tiles: str | Iterable[str] | None, start: str | pd.Timestamp,
                       days: float | None = None, cfg: PlanningConfig | None = None,
                       mode: str | None = None, *,
                       tles: Sequence[TleSet] | dict[str, TleSet] | None = None,
                       esa_plan: EsaPlan | str | Path | None = None,
                       now: pd.Timestamp | None = None) -> pd.DataFrame:
    """The overpass schedule of ``tiles`` over [start, start + days) (see module docstring).

    ``mode`` (default ``cfg.mode``): ``tle`` — SGP4 from the TLEs (``tles``, else
    ``cfg.tle_path``, else the bundled ones); ``esa_plan`` — the ESA plan (``esa_plan``, else
    ``cfg.esa_plan_path``/``esa_plan_urls``); ``backfill`` — one window per past day at the
    tile's real pass time; ``auto`` — per satellite, the ESA plan where it covers the horizon,
    TLE elsewhere (never backfill). Each row's ``source`` says which mode produced it.

    Raises :class:`TileError` listing unknown tiles and :class:`PlanningError` for bad
    input; a horizon without a pass gives an empty schedule and a warning.
    """
    cfg = cfg or PlanningConfig()
    mode = mode or cfg.mode
    if mode not in MODES:
        raise PlanningError(f"mode {mode!r} is not one of {list(MODES)}")
    tile_ids = parse_tiles(tiles if tiles is not None else cfg.tiles)
    if not tile_ids:
        raise PlanningError("no tiles: pass tiles (e.g. --tiles 39QTA,30STF) or set "
                            "planning.tiles")
    t0 = _utc(start)
    n_days = cfg.prediction_days if days is None else days
    if not n_days or n_days <= 0:
        raise PlanningError(f"days must be positive (got {n_days})")
    t1 = t0 + pd.Timedelta(days=n_days)
    pad = pd.Timedelta(minutes=cfg.overpass_window_minutes)
    mid = t0 + (t1 - t0) / 2
    parts: list[pd.DataFrame] = []

    if mode == "tle":
        sel = _tle_sets(cfg, tles, mid)
        warn_tle_age(sel, t0, t1, cfg.tle_max_age_days)
        parts.append(_rows(predict_tle_passes(tile_ids, t0, t1, sel), "tle", pad))
    elif mode == "backfill":
        sel = _tle_sets(cfg, tles, mid)
        parts.append(_rows(backfill_passes(tile_ids, t0, t1, sel, now=now), "backfill", pad))
    elif mode == "esa_plan":
        plan = _load_plan(cfg, esa_plan, required=True)
        assert plan is not None
        log.info("esa_plan: %s", plan.describe())
        for sat in sorted(plan.coverage):
            if plan.covers(sat, t0, t1) != (t0, t1):
                log.warning("the ESA plan for %s covers %s–%s only; the rest of %s–%s has no "
                            "%s window (mode auto fills it from the TLE)", sat,
                            *(f"{x:%Y-%m-%d %H:%M}" for x in plan.coverage[sat]),
                            f"{t0:%Y-%m-%d}", f"{t1:%Y-%m-%d}", sat)
        needs_tle = plan.segments["geometry"].isna().any()
        plan_tles = _tle_sets(cfg, tles, mid) if needs_tle else None
        parts.append(_rows(esa_windows(plan, tile_ids, t0, t1, tles=plan_tles), "esa_plan",
                           pad))
    else:  # auto
        plan = _load_plan(cfg, esa_plan, required=False)
        sel = _tle_sets(cfg, tles, mid)
        sats = sorted(set(sel) | (set(plan.coverage) if plan else set()))
        tle_spans: dict[tuple[pd.Timestamp, pd.Timestamp], dict[str, TleSet]] = {}
        for sat in sats:
            covered = plan.covers(sat, t0, t1) if plan else None
            if plan is not None and covered:
                log.info("auto: %s from the ESA plan %s–%s (%s)", sat,
                         f"{covered[0]:%Y-%m-%d %H:%M}", f"{covered[1]:%Y-%m-%d %H:%M}",
                         ", ".join(plan.sources))
                parts.append(_rows(esa_windows(plan, tile_ids, *covered, tles=sel,
                                               satellites=[sat]), "esa_plan", pad))
            for a, b in _gaps(t0, t1, covered):
                if sat in sel:
                    log.info("auto: %s from the TLE %s–%s", sat, f"{a:%Y-%m-%d %H:%M}",
                             f"{b:%Y-%m-%d %H:%M}")
                    tle_spans.setdefault((a, b), {})[sat] = sel[sat]
                else:
                    log.warning("auto: no ESA plan and no TLE for %s over %s–%s", sat, a, b)
        for (a, b), group in tle_spans.items():
            warn_tle_age(group, a, b, cfg.tle_max_age_days)
            parts.append(_rows(predict_tle_passes(tile_ids, a, b, group), "tle", pad))

    parts = [p for p in parts if len(p)]
    df = pd.concat(parts, ignore_index=True) if parts else _empty()
    df = _types(df[list(SCHEDULE_COLUMNS)].copy())
    df = df.sort_values(["start_time_utc", "tile_id", "satellite"], ignore_index=True)
    if df.empty:
        log.warning("no Sentinel-2 overpass of %s between %s and %s (mode %s): empty "
                    "schedule", ",".join(tile_ids), f"{t0:%Y-%m-%d %H:%M}Z",
                    f"{t1:%Y-%m-%d %H:%M}Z", mode)
    else:
        counts = df.groupby(["source", "satellite"]).size().to_dict()
        log.info("%d window(s) for %d tile(s), %s – %s, by (source, satellite): %s", len(df),
                 len(tile_ids), f"{t0:%Y-%m-%d}", f"{t1:%Y-%m-%d}", counts)
    return df


# --- output -------------------------------------------------------------------------------


def _iso(s: pd.Series) -> pd.Series:
    t = pd.to_datetime(s, utc=True)
    return (t.dt.strftime("%Y-%m-%dT%H:%M:%S.%f").str[:-3] + "Z").where(t.notna(), "")


def schedule_to_csv_frame(df: pd.DataFrame) -> pd.DataFrame:
    """The schedule as written to CSV: times ISO 8601 with Z (milliseconds)."""
    out = df.copy()
    for c in SCHEDULE_COLUMNS:
        if c not in out:
            out[c] = None
    out = out[list(SCHEDULE_COLUMNS) + [c for c in out.columns if c not in SCHEDULE_COLUMNS]]
    for c in TIME_COLUMNS:
        out[c] = _iso(out[c])
    return out


def write_schedule_file(df: pd.DataFrame, path: str | Path, *, versioned: bool = True,
                        run_time: pd.Timestamp | None = None) -> tuple[Path, Path | None]:
    """Write ``df`` to ``path`` atomically (temp file + rename) and, when ``versioned``, a
    copy to ``<path.parent>/schedules/YYYYMMDD/<stem>_HHMMSSZ.csv`` (the run's UTC time).
    Returns (path, versioned copy or None)."""
    path = Path(path)
    run_time = pd.Timestamp.now(tz="UTC") if run_time is None else _utc(run_time)
    text = schedule_to_csv_frame(df).to_csv(index=False)
    atomic_write_text(path, text)
    copy = None
    if versioned:
        folder = path.parent / "schedules" / f"{run_time:%Y%m%d}"
        copy = folder / f"{path.stem}_{run_time:%H%M%S}Z.csv"
        k = 1
        while copy.exists():
            copy = folder / f"{path.stem}_{run_time:%H%M%S}Z_{k}.csv"
            k += 1
        atomic_write_text(copy, text)
    log.info("schedule: %d window(s) → %s%s", len(df), path,
             f" (copy {copy})" if copy else "")
    return path, copy


def write_schedule(df: pd.DataFrame, root: str | Path, *,
                   run_time: pd.Timestamp | None = None) -> Path:
    """Write ``{root}/plan/overpass_schedule.csv`` (atomically) plus the versioned copy
    ``{root}/plan/schedules/YYYYMMDD/overpass_schedule_HHMMSSZ.csv``; returns the first."""
    return write_schedule_file(df, Path(root) / SCHEDULE_FILE, run_time=run_time)[0]


def active_windows(schedule: pd.DataFrame | str | Path, now: pd.Timestamp | str | None = None
                   ) -> pd.DataFrame:
    """Rows of ``schedule`` (a DataFrame or CSV path) whose window contains ``now``
    (start ≤ now < end; default: the current time), sorted by end time."""
    from s2xr.ais.schedule import read_schedule

    df = read_schedule(schedule)
    now = pd.Timestamp.now(tz="UTC") if now is None else _utc(now)
    act = df[(df["start_time_utc"] <= now) & (df["end_time_utc"] > now)]
    return act.sort_values(["end_time_utc", "tile_id"], ignore_index=True)


def format_schedule(df: pd.DataFrame, max_rows: int | None = None) -> str:
    """A plain-text table of the schedule (for the CLI and logs)."""
    head = (f"{'tile':<6} {'sat':<4} {'window start (UTC)':<20} {'window end':<20} "
            f"{'centre (sensing)':<20} {'orbit':>5} {'x-track':>8} {'cover':>5} source")
    lines = [head, "-" * len(head)]
    show = df if max_rows is None else df.head(max_rows)
    for r in show.itertuples():
        orbit = "" if pd.isna(r.relative_orbit) else f"R{int(r.relative_orbit):03d}"
        xt = "" if pd.isna(r.cross_track_km) else f"{r.cross_track_km:+.0f} km"
        cov = "" if pd.isna(r.coverage) else f"{r.coverage:.2f}"
        lines.append(f"{r.tile_id:<6} {r.satellite:<4} {r.start_time_utc:%Y-%m-%d %H:%M:%S} "
                     f"{r.end_time_utc:%Y-%m-%d %H:%M:%S} "
                     f"{r.centre_time_utc:%Y-%m-%d %H:%M:%S} {orbit:>5} {xt:>8} {cov:>5} "
                     f"{r.source}")
    if max_rows is not None and len(df) > max_rows:
        lines.append(f"... {len(df) - max_rows} more")
    return "\n".join(lines)


_COLOURS = {"S2A": "tab:blue", "S2B": "tab:orange", "S2C": "tab:green", "S2": "tab:gray"}


def plot_schedule(df: pd.DataFrame, path: str | Path, *, title: str | None = None) -> Path:
    """Timeline PNG: one row per tile, a bar per window coloured by satellite, a tick at the
    centre (sensing) time. Uses the Agg canvas (no display, no pyplot state)."""
    import matplotlib.dates as mdates
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    path = Path(path)
    tiles = sorted(df["tile_id"].unique()) if len(df) else []
    fig = Figure(figsize=(11, 1.4 + 0.5 * max(len(tiles), 1)), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    if not tiles:
        ax.text(0.5, 0.5, "no overpass in the horizon", ha="center", va="center",
                transform=ax.transAxes)
        ax.set_yticks([])
    span = 1.0
    if tiles:
        lo = mdates.date2num(df["start_time_utc"].min().tz_convert(None).to_pydatetime())
        hi = mdates.date2num(df["end_time_utc"].max().tz_convert(None).to_pydatetime())
        span = max(hi - lo, 1 / 24)
    label = len(df) <= 40
    for y, tile in enumerate(tiles):
        sub = df[df["tile_id"] == tile]
        for r in sub.itertuples():
            a = mdates.date2num(r.start_time_utc.tz_convert(None).to_pydatetime())
            b = mdates.date2num(r.end_time_utc.tz_convert(None).to_pydatetime())
            c = mdates.date2num(r.centre_time_utc.tz_convert(None).to_pydatetime())
            # windows are minutes long on a days-long axis: widen short bars to stay visible
            w = max(b - a, span / 150)
            a = min(a, c - w / 2)
            ax.broken_barh([(a, w)], (y - 0.3, 0.6),
                           facecolors=_COLOURS.get(r.satellite, "tab:purple"),
                           alpha=0.9 if r.source != "backfill" else 0.45,
                           edgecolor="black" if r.source == "esa_plan" else "none")
            ax.plot([c], [y + 0.36], marker="v", ms=3, color="black")
            if label:
                ax.text(c, y - 0.38, f"{r.centre_time_utc:%H:%M}", ha="center", va="top",
                        fontsize=6)
    if tiles:
        ax.set_yticks(range(len(tiles)), tiles)
        ax.set_ylim(-0.8, len(tiles) - 0.4)
        ax.xaxis_date()
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d\n%H:%M"))
        sats = sorted(set(df["satellite"]))
        ax.legend(handles=[Patch(color=_COLOURS.get(s, "tab:purple"), label=s) for s in sats],
                  loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    ax.set_xlabel("UTC")
    srcs = ", ".join(sorted(set(df["source"]))) if len(df) else ""
    ax.set_title(title or f"Sentinel-2 overpass windows ({srcs})")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path
