"""Shared click options and config loading for the CLI commands."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click
from tqdm import tqdm

from s2xr.config import Config, load_config, with_overrides


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
    if out:
        overrides.setdefault("storage", {})["root"] = str(Path(out))
    if scheduler:
        overrides.setdefault("dask", {})["scheduler"] = scheduler
    overrides = {name: values for name, values in overrides.items() if values}
    if not overrides:
        return cfg
    return with_overrides(cfg, overrides, source=config_path or "<cli>")


@contextlib.contextmanager
def chip_progress() -> Iterator[Callable[[int, int], None]]:
    """A tqdm bar for chip jobs (stderr; hidden when not a terminal); yields the callback
    ``progress(done, total)`` that run_chip_job expects."""
    bar = tqdm(total=0, unit="chip", desc="chips", disable=None)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    try:
        yield progress
    finally:
        bar.close()
