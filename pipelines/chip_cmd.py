"""``s2xr chip``: chip every ship of an AIS table (CSV / Excel / Parquet / NMEA / JSONL)."""

from __future__ import annotations

import click
import pandas as pd

from pipelines.chip_job import ChipJobResult, run_chip_job
from pipelines.options import chip_progress, config_option, resolve_config, scheduler_option
from pipelines.services import serve_embedded_stac, uses_embedded_world
from s2xr.errors import InputError


def no_valid_points(ais_path: str, rejects: pd.DataFrame) -> InputError:
    """The error for an AIS file without one valid point, naming the top reasons."""
    top = rejects["reason"].value_counts().head(3) if "reason" in rejects else pd.Series()
    why = "; ".join(f"{n}× {reason}" for reason, n in top.items())
    return InputError(f"AIS file {ais_path}: no valid point ({len(rejects)} row(s) rejected"
                      + (f": {why}" if why else "") + "); nothing chipped")


def print_result(res: ChipJobResult) -> None:
    """The summary, the top reasons and the outputs that exist; "no chip was cut" instead
    of a list of paths when the job wrote no chip (and the dataset has none)."""
    click.echo("\ns2xr chip summary")
    click.echo(res.summary_table())
    if len(res.rejects):
        top = res.rejects.groupby(["stage", "reason"]).size().sort_values(ascending=False)
        click.echo("\nwhy points or chips were dropped (top reasons):")
        for (stage, reason), n in top.head(8).items():
            click.echo(f"  {n:>5}  [{stage}] {reason}")
    if res.n_chips == 0:
        click.echo("\nno chip was cut: nothing written to the chip index, the cube or chips/"
                   + (" (the dataset's earlier chips are unchanged)" if res.index_rows else ""))
    outputs = {name: path for name, path in res.outputs.items() if path.exists()}
    if outputs:
        click.echo("\noutputs:")
        for name, path in outputs.items():
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
    """Chip every ship of an AIS table from Sentinel-2 L2A scenes found via STAC.

    Exit status 0 when the job ran (also when it cut no chip: the summary says why), 2 for
    bad input (config, dates, an AIS file without one valid point — checked before the
    embedded world is built), 1 when the dataset cannot be written."""
    cfg = resolve_config(config_path, out=out, scheduler=scheduler,
                         chip={"include_swir": include_swir})
    t0 = pd.Timestamp(start, tz="UTC") if start else None
    t1 = pd.Timestamp(end, tz="UTC") if end else None
    table = None
    if uses_embedded_world(cfg):  # building and serving the world is the expensive part
        from s2xr.ais import read_ais_table

        table = read_ais_table(ais_path)  # read once: the job takes it as it is
        if table.points.empty:
            raise no_valid_points(ais_path, table.rejects)
    # stac.api_url: null → the embedded world's STAC API, served for the job
    with serve_embedded_stac(cfg) as (run_cfg, _world), chip_progress() as progress:
        res = run_chip_job(run_cfg, ais_path, start=t0, end=t1, progress=progress,
                           ais_table=table)
    print_result(res)
    if res.n_points == 0:
        raise no_valid_points(ais_path, res.rejects)
