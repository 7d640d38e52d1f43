"""``s2xr demo``: the main job (``s2xr run``) end to end on the embedded offline world."""

from __future__ import annotations

from pathlib import Path

import click
import pandas as pd

from pipelines.options import config_option, resolve_config, scheduler_option
from pipelines.run_cmd import print_run_result, run_progress_bar, stop_on_signals
from pipelines.run_job import RunControl, RunOptions, run_batch, uses_embedded_world
from s2xr.config import load_config
from s2xr.errors import ConfigError
from s2xr.store.files import write_contact_sheet
from s2xr.store.index import read_index
from s2xr.store.layout import DatasetLayout


@click.command("demo")
@config_option
@click.option("--out", default=None, help="Dataset root (default: storage.root, ./s2xr-demo).")
@click.option("--window-px", type=click.IntRange(512, 10980), default=None,
              help="Rendered window size in px (default 2048; 10980 = a full tile).")
@scheduler_option
def demo(config_path: str | None, out: str | None, window_px: int | None,
         scheduler: str | None) -> None:
    """Run the whole pipeline offline on the embedded synthetic world.

    Renders Sentinel-2-like scenes on the real MGRS grid at real Sentinel-2 pass times
    (cached), serves their STAC items with a real STAC API (rustac) and their AIS with the
    aisstream replay server on 127.0.0.1, then plans → captures → chips exactly like
    ``s2xr run`` and stops the servers. The data are synthetic and labelled so.
    """
    path = config_path or _default_demo_config()
    cfg = resolve_config(path, out=out, scheduler=scheduler, demo={"window_px": window_px})
    if not uses_embedded_world(cfg):
        raise ConfigError("demo: the config points at a real STAC service (stac.api_url / "
                          "stac.catalog); use `s2xr run` for that, or configs/demo.yaml")
    layout = DatasetLayout.of(cfg)
    root = layout.root
    click.echo(f"embedded world (synthetic) under {layout.world}; its STAC API and AIS "
               "replay server run on 127.0.0.1 for the duration of the job ...")
    control = RunControl()
    with stop_on_signals(control), run_progress_bar(control):
        res = run_batch(cfg, RunOptions(), control=control)
    click.echo("STAC API stopped.")
    print_run_result(res)
    idx = read_index(root)
    if layout.remote is not None:  # the chips are in the object store, not on this disk
        click.echo("\n" + chip_counts(idx, res.chip.n_passed if res.chip else 0))
        click.echo(f"dataset:          {layout.remote} (workspace {root})")
        click.echo(f"open in Jupyter:  import s2xr.store; s2xr.store.open_chips("
                   f"'{layout.remote}')")
        return
    passed = idx.loc[idx["qa_pass"].astype(bool) & idx["path"].notna()].head(48)
    sheet = write_contact_sheet(layout.quicklooks,
                                [(root / p).with_suffix(".jpg") for p in passed["path"]],
                                labels=[str(m) for m in passed["mmsi"]])
    click.echo("\n" + chip_counts(idx, res.chip.n_passed if res.chip else 0))
    click.echo(f"dataset:          {root.resolve()}")
    if sheet:
        click.echo(f"contact sheet:    {sheet}  (first {len(passed)} passed chips; red box = "
                   "ship position at sensing time)")
    click.echo(f"chip index:       {layout.index}")
    click.echo(f"open in Jupyter:  import s2xr.store; s2xr.store.open_chips('{root}')")
    cfg_arg = f" --config {path}" if path else ""
    same_root = path is not None and \
        Path(load_config(path).storage.root).resolve() == root.resolve()
    env = "" if same_root else f"S2XR_STORAGE__ROOT={root} "
    click.echo(f"dashboard:        {env}.venv/bin/s2xr dashboard{cfg_arg}   → "
               "http://127.0.0.1:5006/app")


def chip_counts(idx: pd.DataFrame, n_new: int) -> str:
    """What the dataset holds, each number named: the index has a row for every chip cut;
    only the chips that passed the gate are in the cube and have files under chips/."""
    n_passed = int(idx["qa_pass"].astype(bool).sum()) if len(idx) else 0
    return (f"{len(idx)} chips cut: {n_passed} passed the gate (in the cube, with files "
            f"under chips/), {len(idx) - n_passed} rejected (index rows only, with the "
            f"reason); {n_new} of the passed are new this run")


def _default_demo_config() -> str | None:
    p = Path("configs/demo.yaml")
    return str(p) if p.is_file() else None
