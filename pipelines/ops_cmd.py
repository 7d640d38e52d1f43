"""Operations commands: ``ops-status``, ``ops retry``, ``prune``, ``publish-stac``."""

from __future__ import annotations

from pathlib import Path

import click

from pipelines.chip_job import run_chip_job
from pipelines.options import config_option, dataset_session, require_local, resolve_config
from pipelines.services import serve_embedded_stac
from s2xr.errors import InputError
from s2xr.ops import JobStore
from s2xr.ops.prune import prune_chips
from s2xr.store.consistency import dataset_lock
from s2xr.store.layout import DatasetLayout
from s2xr.store.stac import publish_stac, validate_stac, write_stac_geoparquet


@click.command("ops-status")
@config_option
@click.option("--out", default=None, help="Dataset root (overrides storage.root).")
def ops_status(config_path: str | None, out: str | None) -> None:
    """Job counts by state, the next retries and the last runs."""
    cfg = resolve_config(config_path, out=out)
    store = JobStore(DatasetLayout.of(cfg).ops_db, cfg.ops)
    click.echo("jobs by state:")
    for state, n in sorted(store.counts().items()):
        click.echo(f"  {state:<10} {n:>7}")
    due = store.jobs(states=("failed", "deferred")).sort_values("next_attempt_at").head(5)
    if len(due):
        click.echo("next retries:")
        for r in due.itertuples():
            click.echo(f"  {r.next_attempt_at}  {r.job_id}  attempt {r.attempts}: {r.reason}")
    click.echo("last runs:")
    for r in store.recent_runs(5).itertuples():
        click.echo(f"  {r.run_id}  {r.kind:<6} {r.status:<11} {r.started_at} → {r.ended_at}")


@click.group("ops")
def ops() -> None:
    """Ops DB actions."""


@ops.command("retry")
@config_option
@click.option("--out", default=None, help="Dataset root (overrides storage.root).")
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="At most this many due jobs.")
def ops_retry(config_path: str | None, out: str | None, limit: int | None) -> None:
    """Re-run failed/deferred jobs whose back-off has elapsed (max_retries enforced)."""
    cfg = resolve_config(config_path, out=out)
    store = JobStore(DatasetLayout.of(cfg).ops_db, cfg.ops)
    store.recover()  # jobs a crashed or failed run left pending become due retries
    due = store.due(limit)
    if due.empty:
        click.echo("no job is due for a retry")
        return
    with serve_embedded_stac(cfg) as (run_cfg, _world):
        for source, jobs in due.groupby("ais_source", dropna=False):
            if not isinstance(source, str) or not Path(source).is_file():
                click.echo(f"  {len(jobs)} job(s) without a readable AIS source ({source}): "
                           "skipped")
                continue
            res = run_chip_job(run_cfg, source, only_mmsi=set(jobs["mmsi"].astype(int)))
            click.echo(f"  {source}: {len(jobs)} job(s) retried → {res.n_passed} chip(s) "
                       f"passed, {res.n_deferred} deferred")


@click.command("prune")
@config_option
@click.option("--out", default=None, help="Dataset root (overrides storage.root).")
@click.option("--ais", "ais_path", default=None, type=click.Path(exists=True, dir_okay=False),
              help="AIS file to check against (default: the dataset's AIS observations).")
@click.option("--time-tol-min", type=click.FloatRange(min=0), default=10.0, show_default=True)
@click.option("--dist-tol-m", type=click.FloatRange(min=0), default=500.0, show_default=True)
@click.option("--dry-run", is_flag=True, help="Only list what would be removed.")
@click.option("--force", is_flag=True, help="Remove even more than ops.prune_max_share of "
              "the chips.")
@click.option("--undo", "undo_area", default=None, metavar="DIR",
              help="Put back what a prune moved to DIR (pruned/YYYYMMDDTHHMMSS).")
def prune(config_path: str | None, out: str | None, ais_path: str | None, time_tol_min: float,
          dist_tol_m: float, dry_run: bool, force: bool, undo_area: str | None) -> None:
    """Remove chips whose AIS record is missing or beyond tolerance (every store at once).

    Refuses to remove more than ops.prune_max_share of the chips without --force. Removed
    chips (files, index and cube rows) are moved to {root}/pruned/YYYYMMDDTHHMMSS/, which
    `s2xr prune --undo DIR` puts back and `s2xr vacuum` empties after
    ops.pruned_retention_days."""
    from s2xr.ops.prune import PRUNED_DIR, load_observations, unprune

    cfg = resolve_config(config_path, out=out)
    require_local(cfg, "prune")
    layout = DatasetLayout.of(cfg)
    root = layout.root
    if undo_area:
        with dataset_lock(root):
            rows = unprune(root, undo_area)
        click.echo(f"restored {len(rows)} chip(s) from {undo_area}")
        return
    obs = load_observations(layout, ais_path)
    with dataset_lock(root):
        res = prune_chips(root, obs, time_tol_min=time_tol_min, dist_tol_m=dist_tol_m,
                          dry_run=dry_run, max_share=cfg.ops.prune_max_share, force=force)
    verb = "would remove" if dry_run else "removed"
    click.echo(f"{verb} {len(res)} chip(s) of {res.n_chips}")
    for r in res.doomed.head(20).itertuples():
        click.echo(f"  {r.chip_id}  {r.mmsi}  {r.prune_reason}")
    if len(res) > 20:
        click.echo(f"  … and {len(res) - 20} more")
    if dry_run and res.refusal:
        click.echo(f"a prune would be refused: {res.refusal}")
    if res.area is not None:
        rel = f"{PRUNED_DIR}/{res.area.name}"
        click.echo(f"moved to {res.area} (undo: s2xr prune --undo {rel}; `s2xr vacuum` "
                   f"empties it after {cfg.ops.pruned_retention_days:g} day(s))")


@click.command("publish-stac")
@config_option
@click.option("--out", default=None, help="Dataset root (overrides storage.root).")
@click.option("--absolute", is_flag=True, help="Absolute hrefs (links and assets, in the "
              "catalog and the stac-geoparquet) instead of relative ones: local paths, or "
              "URLs with --base-url.")
@click.option("--base-url", default=None, help="With --absolute: the URL the dataset root "
              "is served at (every href becomes URL/ + the file's path under the root).")
def publish_stac_cmd(config_path: str | None, out: str | None, absolute: bool,
                     base_url: str | None) -> None:
    """Write a STAC catalog of the chips (one collection per tile) and stac-geoparquet;
    relative hrefs by default, so the dataset can move."""
    cfg = resolve_config(config_path, out=out)
    if cfg.storage.url is not None and absolute and base_url is None:
        raise InputError("publish-stac --absolute on an object store root needs --base-url "
                         "(the URL readers reach the store at, e.g. https://bucket.s3."
                         "amazonaws.com/prefix): local absolute paths would name the "
                         "workspace")
    with dataset_session(cfg) as layout:
        cat = publish_stac(layout.root, absolute=absolute, base_url=base_url)
        n = validate_stac(cat)
        gpq = write_stac_geoparquet(layout.root, absolute=absolute, base_url=base_url,
                                    catalog=cat)
    click.echo(f"STAC catalog {cat} ({n} documents valid against the core STAC schemas)")
    click.echo(f"stac-geoparquet {gpq}")


@click.command("qa-report")
@config_option
@click.option("--out", default=None, help="Dataset root (overrides storage.root), or the "
              "report file to write when it ends in .html (the dataset: storage.root).")
@click.option("--alert-url", default=None, help="Webhook to POST to above the threshold.")
@click.option("--alert-threshold", type=click.FloatRange(0, 1), default=0.5,
              show_default=True, help="Failure rate (rejected / cut) that triggers the alert.")
def qa_report(config_path: str | None, out: str | None, alert_url: str | None,
              alert_threshold: float) -> None:
    """Write the QA report (reports/ under the dataset, or --out FILE.html) and optionally
    alert on a high failure rate."""
    from s2xr.report import send_alert, summarize, write_qa_report

    dest = None
    if out and Path(out).suffix.lower() in (".html", ".htm") and not Path(out).is_dir():
        dest, out = Path(out), None  # the report file; the dataset is storage.root
    cfg = resolve_config(config_path, out=out)
    root = Path(cfg.storage.root)
    if cfg.storage.url is None and not root.is_dir():
        raise InputError(f"qa-report: no dataset at {root} (--out is the dataset root, or "
                         "the report file FILE.html of the dataset at storage.root)")
    with dataset_session(cfg) as layout:
        path = write_qa_report(root, dest=dest, data_root=layout.data_root)
        s = summarize(root)
    click.echo(f"QA report {path}: {s.n_passed}/{s.n_chips} passed "
               f"(failure rate {s.failure_rate:.1%})")
    if alert_url and send_alert(s, alert_url, threshold=alert_threshold):
        click.echo("alert sent")
