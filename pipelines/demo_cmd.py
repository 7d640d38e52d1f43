"""``s2xr demo``: build the embedded world, serve it, chip every ship, print where it went."""

from __future__ import annotations

from pathlib import Path

import click

from pipelines.chip_cmd import print_result
from pipelines.chip_job import run_chip_job
from pipelines.options import chip_progress, config_option, resolve_config, scheduler_option
from s2xr.demo import StacApiServer, build_world
from s2xr.store.files import write_contact_sheet
from s2xr.store.index import read_index


@click.command("demo")
@config_option
@click.option("--out", default=None, help="Dataset root (default: storage.root, ./s2xr-demo).")
@click.option("--window-px", type=int, default=None,
              help="Rendered window size in px (default 2048; 10980 = a full tile).")
@scheduler_option
def demo(config_path: str | None, out: str | None, window_px: int | None,
         scheduler: str | None) -> None:
    """Run the whole chip job offline on the embedded synthetic world.

    Renders Sentinel-2-like scenes on the real MGRS grid (cached), serves their STAC items
    with a real STAC API (rustac) on 127.0.0.1, chips every AIS track through it and stops
    the server. The data are synthetic and labelled so.
    """
    cfg = resolve_config(config_path or _default_demo_config(), out=out, scheduler=scheduler,
                         demo={"window_px": window_px})
    root = Path(cfg.storage.root)
    click.echo(f"building the embedded world (synthetic) under {root / 'world'} ...")
    world = build_world(root / "world", cfg.demo)
    with StacApiServer(world.collection_path, world.items_path) as server:
        click.echo(f"STAC API (rustac) serving {len(world.item_ids)} synthetic items at "
                   f"{server.url}")
        data = cfg.model_dump(mode="json", exclude={"ais": {"api_key"}})
        data["stac"].update(api_url=server.url, catalog=None, collection=world.collection)
        from s2xr.config import build_config

        run_cfg = build_config(data, source="demo")
        with chip_progress() as progress:
            res = run_chip_job(run_cfg, world.ais_path, progress=progress)
    click.echo("STAC API stopped.")
    print_result(res)
    idx = read_index(root)
    passed = idx.loc[idx["qa_pass"].astype(bool)].head(48)
    sheet = write_contact_sheet(root / "quicklooks.png",
                                [(root / p).with_suffix(".jpg") for p in passed["path"]],
                                labels=[str(m) for m in passed["mmsi"]])
    click.echo(f"\n{res.index_rows} chips on disk ({res.n_passed} new passed the gate this run) "
               f"under {root.resolve()}")
    if sheet:
        click.echo(f"contact sheet:    {sheet}  (first {len(passed)} passed chips; red box = "
                   "ship position at sensing time)")
    click.echo("open in Jupyter:  import s2xr.store; s2xr.store.open_chips("
               f"'{root}')")


def _default_demo_config() -> str | None:
    p = Path("configs/demo.yaml")
    return str(p) if p.is_file() else None
