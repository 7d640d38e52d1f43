"""Maintenance commands: ``doctor``, ``vacuum`` and ``publish``."""

from __future__ import annotations

import click

from pipelines.options import config_option, dataset_session, require_local, resolve_config
from s2xr.store.layout import DatasetLayout


@click.command("doctor")
@config_option
@click.option("--out", default=None, help="Dataset root (overrides storage.root).")
@click.option("--offline", is_flag=True, help="Skip the STAC and AIS network checks.")
@click.option("--skip", "skip", multiple=True, type=click.Choice(["stac", "ais"]),
              help="Skip one network check (repeatable).")
def doctor(config_path: str | None, out: str | None, offline: bool,
           skip: tuple[str, ...]) -> None:
    """Check config, environment, dependency versions, storage, ops DB, the STAC endpoint and
    AIS reachability. Exits 1 if any check fails."""
    from s2xr.ops.doctor import run_doctor

    cfg = resolve_config(config_path, out=out)
    require_local(cfg, "doctor")
    checks = run_doctor(cfg, network=not offline, db_path=DatasetLayout.of(cfg).ops_db,
                        skip=skip)
    width = max(len(c.name) for c in checks)
    for c in checks:
        mark = click.style("ok  ", fg="green") if c.ok else click.style("FAIL", fg="red")
        click.echo(f"{mark} {c.name:<{width}}  {c.detail}")
    failed = [c.name for c in checks if not c.ok]
    if failed:
        click.echo(f"{len(failed)} check(s) failed: {', '.join(failed)}", err=True)
        raise SystemExit(1)
    click.echo("all checks passed")


@click.command("vacuum")
@config_option
@click.option("--out", default=None, help="Dataset root (overrides storage.root).")
@click.option("--rm-empty", is_flag=True, help="Also remove empty directories under chips/ "
              "and ais/.")
@click.option("--purge-pruned", is_flag=True, help="Empty every pruned/ area now (default: "
              "those older than ops.pruned_retention_days).")
def vacuum(config_path: str | None, out: str | None, rm_empty: bool,
           purge_pruned: bool) -> None:
    """Repair (orphans, temp files) and compact the dataset (the chip cube without empty
    slots, on a local disk) and its ops DB; empty the
    pruned/ areas older than ops.pruned_retention_days (what `s2xr prune` moved aside)."""
    from s2xr.ops.maintenance import vacuum_dataset

    cfg = resolve_config(config_path, out=out)
    with dataset_session(cfg) as layout:
        rep = vacuum_dataset(layout.root, layout.ops_db, rm_empty=rm_empty,
                             pruned_retention_days=cfg.ops.pruned_retention_days,
                             purge_pruned=purge_pruned, data_root=layout.data_root)
    click.echo(f"ops DB {rep.db_bytes_before:,} → {rep.db_bytes_after:,} bytes; removed "
               f"{rep.orphan_files_removed} orphan file(s), {rep.temp_files_removed} temp "
               f"file(s), {rep.cube_rows_dropped} stray cube row(s), "
               f"{rep.cube_holes_removed} empty cube slot(s), "
               f"{rep.empty_dirs_removed} empty dir(s), {rep.pruned_areas_removed} pruned "
               "area(s)")


@click.command("publish")
@config_option
@click.option("--out", default=None, help="Dataset root (overrides storage.root).")
@click.option("--samples", type=click.IntRange(min=0), default=5, show_default=True,
              help="Sample chips listed in the manifest.")
def publish(config_path: str | None, out: str | None, samples: int) -> None:
    """Write manifest.json (counts, time range, files, sample chips) at the dataset root."""
    from s2xr.ops.maintenance import write_manifest

    cfg = resolve_config(config_path, out=out)
    with dataset_session(cfg) as layout:
        path, m = write_manifest(layout.root, n_samples=samples)
    c = m["counts"]
    click.echo(f"manifest {path}: {c['chips_passed']} chip(s) of {c['ships']} ship(s) in "
               f"{c['scenes']} scene(s); splits {c['by_split']}")
