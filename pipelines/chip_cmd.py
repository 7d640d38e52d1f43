"""``s2xr chip``: chip every ship of an AIS table (CSV / Excel / Parquet / NMEA / JSONL)."""

from __future__ import annotations

import click
import pandas as pd

from pipelines.chip_job import ChipJobResult, run_chip_job
from pipelines.options import chip_progress, config_option, resolve_config, scheduler_option
from pipelines.run_job import serve_embedded_stac


def print_result(res: ChipJobResult) -> None:
    click.echo("\ns2xr chip summary")
    click.echo(res.summary_table())
    if len(res.rejects):
        top = res.rejects.groupby(["stage", "reason"]).size().sort_values(ascending=False)
        click.echo("\nwhy points or chips were dropped (top reasons):")
        for (stage, reason), n in top.head(8).items():
            click.echo(f"  {n:>5}  [{stage}] {reason}")
    click.echo("\noutputs:")
    for name, path in res.outputs.items():
        click.echo(f"  {name:<8} {path}")


@click.command("chip")
@config_option
@click.option("--ais", "ais_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="AIS table: columns mmsi, lat, lon and optional time/overpass_time.")
@click.option("--out", default=None, help="Dataset root (overrides storage.root).")
@click.option("--start", default=None, help="Search period start for points without time.")
@click.option("--end", default=None, help="Search period end for points without time.")
@click.option("--include-swir/--no-swir", default=None, help="Add B11/B12 (20 m) bands.")
@scheduler_option
def chip(config_path: str | None, ais_path: str, out: str | None, start: str | None,
         end: str | None, include_swir: bool | None, scheduler: str | None) -> None:
    """Chip every ship of an AIS table from Sentinel-2 L2A scenes found via STAC."""
    cfg = resolve_config(config_path, out=out, scheduler=scheduler,
                         chip={"include_swir": include_swir})
    t0 = pd.Timestamp(start, tz="UTC") if start else None
    t1 = pd.Timestamp(end, tz="UTC") if end else None
    # stac.api_url: null → the embedded world's STAC API, served for the job
    with serve_embedded_stac(cfg) as (run_cfg, _world), chip_progress() as progress:
        res = run_chip_job(run_cfg, ais_path, start=t0, end=t1, progress=progress)
    print_result(res)
