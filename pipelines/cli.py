"""The ``s2xr`` command line: a thin click layer over ``pipelines`` jobs.

Each sub-command lives in a module named for what it does and is registered here; only this
module configures logging.
"""

from __future__ import annotations

import importlib
import logging
import sys

import click

from s2xr.errors import S2xrError

# module, attribute: each attribute is a click command (or group) added to ``main``.
COMMANDS: list[tuple[str, str]] = [
    ("pipelines.chip_cmd", "chip"),
    ("pipelines.demo_cmd", "demo"),
    ("pipelines.ops_cmd", "ops_status"),
    ("pipelines.ops_cmd", "ops"),
    ("pipelines.ops_cmd", "prune"),
    ("pipelines.ops_cmd", "publish_stac_cmd"),
    ("pipelines.ops_cmd", "qa_report"),
    ("pipelines.ais_cmd", "collect_ais"),
]


def configure_logging(verbose: int, quiet: bool) -> None:
    """Configure the root logger once (stderr); library modules only create loggers."""
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_s2xr", False):
            root.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s",
                                           "%H:%M:%S"))
    handler._s2xr = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("rasterio", "urllib3", "distributed", "asyncio", "fsspec", "bokeh", "tornado"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except S2xrError as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            ctx.exit(2)


@click.group(cls=_Group)
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors.")
@click.version_option(package_name="s2xr")
def main(verbose: int, quiet: bool) -> None:
    """s2xr: Sentinel-2 + AIS ship chips as ML-ready xarray/Zarr datasets."""
    configure_logging(verbose, quiet)


for _module, _attr in COMMANDS:
    main.add_command(getattr(importlib.import_module(_module), _attr))


if __name__ == "__main__":  # pragma: no cover
    main()
