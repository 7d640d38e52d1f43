"""``s2xr predict-overpasses``: when Sentinel-2A/2B/2C image the tiles (the AIS schedule).

Writes the schedule CSV (``--out``, default ``{storage.root}/plan/overpass_schedule.csv``)
atomically with a versioned copy under ``schedules/YYYYMMDD/`` next to it, prints the
windows as a table and, with ``--plot``, draws them on a timeline PNG.
"""

from __future__ import annotations

from pathlib import Path

import click
import pandas as pd

from pipelines.options import config_option, dataset_session, resolve_config
from s2xr import planning
from s2xr.config import is_url
from s2xr.store.layout import DatasetLayout


@click.command("predict-overpasses")
@config_option
@click.option("--mode", type=click.Choice(planning.MODES), default=None,
              help="tle | esa_plan | backfill | auto (default: planning.mode).")
@click.option("--tiles", default=None, help="Comma-separated tile IDs, e.g. 39QTA,30STF "
              "(a leading T is fine; default: planning.tiles).")
@click.option("--start", default=None, help="First UTC day or time, ISO 8601 "
              "(default: today 00:00 UTC).")
@click.option("--days", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Horizon in days (default: planning.prediction_days).")
@click.option("--out", "out_path", default=None, type=click.Path(dir_okay=False),
              help="Schedule CSV to write (default: {storage.root}/"
                   f"{DatasetLayout(Path()).schedule}).")
@click.option("--plot", "plot_path", default=None, type=click.Path(dir_okay=False),
              help="Also draw the windows on a timeline PNG.")
@click.option("--tle", "tle_path", default=None,
              help="TLE file or URL (overrides planning.tle_path; default: bundled).")
@click.option("--esa-plan", "esa_plan", default=None,
              help="ESA plan KML/KML.gz/KMZ/CSV, a folder of them or a comma list "
                   "(overrides planning.esa_plan_path).")
@click.option("--window-minutes", type=click.FloatRange(min=0), default=None,
              help="Pad each window by this many minutes (planning.overpass_window_minutes).")
@click.option("--max-rows", type=click.IntRange(min=0), default=60, show_default=True,
              help="Rows of the printed table.")
def predict_overpasses(config_path: str | None, mode: str | None, tiles: str | None,
                       start: str | None, days: float | None, out_path: str | None,
                       plot_path: str | None, tle_path: str | None, esa_plan: str | None,
                       window_minutes: float | None, max_rows: int) -> None:
    """Predict per-tile Sentinel-2 overpass windows and write the schedule CSV."""
    cfg = resolve_config(config_path, planning={
        "mode": mode, "tle_path": tle_path, "esa_plan_path": esa_plan,
        "overpass_window_minutes": window_minutes})
    pc = cfg.planning
    t0 = start or pd.Timestamp.now(tz="UTC").floor("D")
    tles = None
    if pc.mode != "esa_plan" or pc.tle_path:
        tles = planning.read_tle(pc.tle_path)
        when = pd.Timestamp(t0, tz="UTC") if pd.Timestamp(t0).tzinfo is None \
            else pd.Timestamp(t0)
        chosen = planning.select_tles(tles, when)
        click.echo("TLE epochs: " + ", ".join(f"{s} {t.epoch:%Y-%m-%dT%H:%M:%SZ} ({t.source})"
                                               for s, t in chosen.items()))
    df = planning.predict_overpasses(tiles, t0, days, pc, tles=tles)
    by_source = df.groupby("source").size().to_dict() if len(df) else {}
    click.echo(f"mode {pc.mode}: {len(df)} window(s) {by_source}")
    click.echo(planning.format_schedule(df, max_rows=max_rows))
    if out_path:
        if is_url(out_path):  # a file path, not a dataset root: "s3:/…" would be a folder
            raise click.BadParameter(
                f"{out_path} is a URL; --out takes a local CSV path. To write the schedule "
                "into an object store dataset, leave --out out and set storage.root to the "
                "URL (--config)", param_hint="--out")
        path, copy = planning.write_schedule_file(df, out_path)
    else:
        with dataset_session(cfg) as layout:
            path = planning.write_schedule(df, layout.root)
        copy = None
    click.echo(f"wrote {path}" + (f" (versioned copy {copy})" if copy else
                                  " (+ versioned copy under plan/schedules/)"))
    if plot_path:
        click.echo(f"plot {planning.plot_schedule(df, Path(plot_path))}")
