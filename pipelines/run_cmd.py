"""``s2xr run``: the end-to-end batch (or ``--continuous`` cycles)."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from typing import Any

import click
import pandas as pd
from tqdm import tqdm

from pipelines.options import config_option, resolve_config, scheduler_option
from pipelines.run_job import RunControl, RunOptions, RunResult, run_batch, run_continuous


@contextlib.contextmanager
def stop_on_signals(control: RunControl) -> Iterator[None]:
    """SIGTERM and the first Ctrl-C ask the run to stop after the current step; a second
    Ctrl-C interrupts at once."""
    def on_signal(signum: int, _frame: Any) -> None:
        if control.stopped and signum == signal.SIGINT:
            raise KeyboardInterrupt
        click.echo(f"\n{signal.Signals(signum).name}: stopping after the current step "
                   "(Ctrl-C again to abort)", err=True)
        control.request_stop()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@contextlib.contextmanager
def run_progress_bar(control: RunControl) -> Iterator[None]:
    bar = tqdm(total=0, unit="", desc="run", disable=None)

    def show(snap: dict[str, Any]) -> None:
        bar.set_description(snap["stage"])
        bar.total = snap["total"]
        bar.n = snap["done"]
        bar.refresh()

    control.subscribe(show)
    try:
        yield
    finally:
        bar.close()


def print_run_result(res: RunResult) -> None:
    click.echo(f"\ns2xr run {res.run_id} summary")
    click.echo(res.summary_table())
    click.echo(f"  {res.summary}")
    for note in res.notes:
        click.echo(f"  note: {note}")
    if res.schedule_path:
        click.echo(f"\nschedule: {res.schedule_path}")
    click.echo(f"dataset:  {res.root.resolve()}")
    if res.exit_code:
        click.echo(f"exit status {res.exit_code}: {res.n_windows_missed} capture window(s) "
                   "missed, their AIS is lost (see 'missed' above; docs/runbook.md)")


@click.command("run")
@config_option
@click.option("--out", default=None, help="Dataset root (overrides storage.root).")
@click.option("--max-ships", type=click.IntRange(min=0), default=None,
              help="At most this many vessels.")
@click.option("--max-chips", type=click.IntRange(min=0), default=None,
              help="At most this many new chips.")
@click.option("--bind-chips-to-ships", is_flag=True,
              help="One chip per ship (the scene nearest in time): chips = ships.")
@click.option("--include-swir/--no-swir", default=None, help="Add B11/B12 (20 m) bands.")
@click.option("--restrict-to-schedule/--no-restrict-to-schedule", default=True,
              show_default=True, help="Capture only the schedule tiles during their windows.")
@click.option("--dry-run-ais", is_flag=True, help="Embedded world only: use its SYNTHETIC AIS "
              "directly instead of capturing through the replay server.")
@click.option("--days", type=click.IntRange(min=1), default=None,
              help="Prediction horizon in days.")
@click.option("--tiles", default=None, help="Comma-separated MGRS tiles to plan "
              "(overrides planning.tiles), e.g. 31UET,30STE.")
@click.option("--capture-ahead-min", type=click.FloatRange(min=0), default=30.0,
              show_default=True, help="Real services: capture the windows starting within "
              "this many minutes (keep it at least the interval between batches); later "
              "ones are left for a later batch.")
@click.option("--start", default=None, help="Planning start date (default: today; the "
              "embedded world's first scene day).")
@click.option("--continuous", is_flag=True, help="Run cycles until SIGTERM / Ctrl-C.")
@click.option("--interval-min", type=click.FloatRange(min=0, min_open=True), default=30.0,
              show_default=True,
              help="Minutes between cycles with --continuous.")
@click.option("--max-cycles", type=click.IntRange(min=1), default=None,
              help="Stop after N cycles.")
@scheduler_option
def run(config_path: str | None, out: str | None, max_ships: int | None,
        max_chips: int | None, bind_chips_to_ships: bool, include_swir: bool | None,
        restrict_to_schedule: bool, dry_run_ais: bool, days: int | None, tiles: str | None,
        capture_ahead_min: float, start: str | None, continuous: bool, interval_min: float,
        max_cycles: int | None, scheduler: str | None) -> None:
    """Predict overpasses, capture AIS in their windows, then (after the L2A lag) chip.

    With stac.api_url: null (configs/demo.yaml) everything runs on the embedded offline
    world, its STAC API and the AIS replay server, started and stopped by this command.
    Exit status 0; 3 when capture windows were missed (the summary says why); 2 when the
    run cannot start (no tiles, no AISSTREAM_API_KEY for a live capture, a bad config).
    """
    cfg = resolve_config(config_path, out=out)
    opts = RunOptions(max_ships=max_ships, max_chips=max_chips,
                      bind_chips_to_ships=bind_chips_to_ships, include_swir=include_swir,
                      restrict_to_schedule=restrict_to_schedule, dry_run_ais=dry_run_ais,
                      scheduler=scheduler, days=days, capture_ahead_min=capture_ahead_min,
                      tiles=tuple(t.strip() for t in tiles.split(",") if t.strip())
                      if tiles else None,
                      start=pd.Timestamp(start, tz="UTC") if start else None)
    control = RunControl()
    with stop_on_signals(control), run_progress_bar(control):
        if continuous:
            results = run_continuous(cfg, opts, interval_min=interval_min, control=control,
                                     max_cycles=max_cycles)
        else:
            results = [run_batch(cfg, opts, control=control)]
    for res in results[-1:]:
        print_run_result(res)
    if control.stopped:
        click.echo(f"stopped cleanly after {len(results)} cycle(s); re-run to resume")
    elif results and results[-1].exit_code:
        raise SystemExit(results[-1].exit_code)
