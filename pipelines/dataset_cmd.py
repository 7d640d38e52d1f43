"""Dataset commands: ``dataset-card`` (dataset.yaml + DATASET.md) and ``export-labels``."""

from __future__ import annotations

from pathlib import Path

import click

from pipelines.options import config_option, dataset_session, resolve_config


@click.command("dataset-card")
@config_option
@click.option("--out", default=None, help="Dataset root (overrides storage.root).")
def dataset_card(config_path: str | None, out: str | None) -> None:
    """Write dataset.yaml and DATASET.md (bands, per-band statistics, classes, splits)."""
    from s2xr.store.card import write_dataset_card

    cfg = resolve_config(config_path, out=out)
    with dataset_session(cfg) as layout:
        y_path, md_path = write_dataset_card(layout.root, layout.data_root)
    click.echo(f"dataset card {md_path}\nmachine-readable {y_path}")


@click.command("export-labels")
@config_option
@click.option("--out", default=None, help="Dataset root (overrides storage.root).")
@click.option("--format", "fmt", type=click.Choice(["coco", "yolo-obb"]), default="coco",
              show_default=True, help="COCO-style JSON with oriented boxes, or YOLO-OBB txt.")
@click.option("--dest", default=None, type=click.Path(file_okay=False),
              help="Export directory (default: {root}/exports).")
def export_labels(config_path: str | None, out: str | None, fmt: str,
                  dest: str | None) -> None:
    """Export the ship labels of the chips in the cube, one file set per split."""
    from s2xr.labels import export_coco, export_yolo_obb

    cfg = resolve_config(config_path, out=out)
    with dataset_session(cfg) as layout:
        if fmt == "coco":
            paths = export_coco(layout.root, Path(dest) if dest else None,
                                data_root=layout.data_root)
        else:  # images are symlinks to the quicklooks: none for quicklooks in a store
            paths = export_yolo_obb(layout.root, Path(dest) if dest else None,
                                    link_images=layout.remote is None,
                                    data_root=layout.data_root)
            if layout.remote is not None:
                click.echo(f"images/ not linked: the quicklooks are in {layout.remote}")
    if not paths:
        click.echo("no chips in the index: nothing exported")
    for split, p in sorted(paths.items()):
        click.echo(f"  {split:<6} {p}")
