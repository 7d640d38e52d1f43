"""Shared click options and config loading for the CLI commands."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click
from tqdm import tqdm

from s2xr.config import Config, is_url, load_config, with_overrides
from s2xr.errors import InputError
from s2xr.store.consistency import dataset_lock
from s2xr.store.layout import DatasetLayout
from s2xr.store.objects import ensure_dataset_writable
from s2xr.store.sync import synced


def config_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--config", "config_path", type=click.Path(dir_okay=False),
                        default=None, help="YAML config (default: built-in defaults).")(f)


def scheduler_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--scheduler", default=None,
                        help="threads | processes | synchronous | local-cluster | "
                             "tcp://host:port (overrides dask.scheduler).")(f)


def resolve_config(config_path: str | None, *, out: str | None = None,
                   scheduler: str | None = None, **sections: dict[str, Any]) -> Config:
    """Load the config file (or the defaults) and apply the CLI flags given (``None``: not
    given) with :func:`~s2xr.config.with_overrides`: ``out`` → ``storage.root``,
    ``scheduler`` → ``dask.scheduler``, ``section={key: value}`` the rest."""
    cfg = load_config(config_path)
    overrides = {name: {k: v for k, v in values.items() if v is not None}
                 for name, values in sections.items()}
    if out:  # a URL (s3://bucket/prefix) as given: Path would fold its "//"
        storage = overrides.setdefault("storage", {})
        storage["root"] = out if is_url(out) else str(Path(out))
        if not is_url(out):  # a local root is its own workspace (the config's was a URL's)
            storage["workspace"] = None
    if scheduler:
        overrides.setdefault("dask", {})["scheduler"] = scheduler
    overrides = {name: values for name, values in overrides.items() if values}
    if not overrides:
        return cfg
    return with_overrides(cfg, overrides, source=config_path or "<cli>")


@contextlib.contextmanager
def chip_progress() -> Iterator[Callable[[int, int, str], None]]:
    """A tqdm bar for chip jobs (stderr; hidden when not a terminal); yields the callback
    ``progress(done, total, unit)`` that run_chip_job expects (the bar is named after the
    unit: searches, then chips written)."""
    bar = tqdm(total=0, unit="", desc="chips", disable=None)

    shown = [""]

    def progress(done: int, total: int, unit: str = "chips") -> None:
        if shown[0] != unit:  # (a disabled bar has no description to compare)
            shown[0] = unit
            bar.set_description(unit)
        bar.total = total
        bar.n = done
        bar.refresh()

    try:
        yield progress
    finally:
        bar.close()


OBJECT_STORE_COMMANDS = ("run", "chip", "demo", "predict-overpasses", "ops retry",
                         "ops-status", "vacuum", "publish", "publish-stac", "qa-report",
                         "dataset-card", "export-labels")
"""The commands that take an object store ``storage.root`` (docs/cluster.md)."""


@contextlib.contextmanager
def dataset_session(cfg: Config) -> Iterator[DatasetLayout]:
    """For a command that reads and writes the dataset's client files: with an object store
    root, hold the dataset lock and sync the workspace (pulled first, pushed at the end:
    :func:`~s2xr.store.sync.synced`); a local root needs neither. Yields the layout."""
    layout = DatasetLayout.of(cfg)
    if layout.remote is None:
        yield layout
        return
    ensure_dataset_writable(layout)
    with dataset_lock(layout.root, reentrant=True), synced(layout):
        yield layout


def require_local(cfg: Config, command: str) -> None:
    """Refuse ``command`` on an object store root, naming what to do instead."""
    if cfg.storage.url is not None:
        raise InputError(f"{command}: storage.root {cfg.storage.url} is an object store; "
                         f"{command} needs a local dataset (copy it to a disk, run it there "
                         "and copy it back). Commands that take an object store root: "
                         + ", ".join(OBJECT_STORE_COMMANDS))
