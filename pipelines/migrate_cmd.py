"""``s2xr migrate-config``: the predecessor's ``config.yaml`` → an s2xr config."""

from __future__ import annotations

from pathlib import Path

import click

from s2xr.errors import ConfigError
from s2xr.migrate import migrate_config
from s2xr.store.layout import atomic_write_text


@click.command("migrate-config")
@click.argument("old", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--out", "out", default=None, type=click.Path(dir_okay=False),
              help="Write the s2xr config to this file (default: print it on stdout and "
                   "the key-by-key report on stderr).")
@click.option("--force", is_flag=True, help="Overwrite --out if it exists.")
def migrate_config_cmd(old: str, out: str | None, force: bool) -> None:
    """Convert the predecessor's config.yaml into an s2xr config: every key mapped, or
    listed as dropped with the reason (printed, and written as comments)."""
    if out is not None:
        dest = Path(out)
        if dest.resolve() == Path(old).resolve():
            raise ConfigError(f"--out {dest} is the old config itself; write the s2xr config "
                              "to another file")
        if dest.exists() and not force:
            raise ConfigError(f"--out {dest} exists; pass --force to overwrite it")
    migration = migrate_config(old)
    text = migration.to_yaml()
    report_to_stderr = out is None
    if out is None:
        click.echo(text, nl=False)
    else:
        atomic_write_text(Path(out), text)
    for line in migration.report():
        click.echo(f"  {line}", err=report_to_stderr)
    click.echo(f"{migration.source}: {len(migration.mapped)} key(s) mapped, "
               f"{len(migration.dropped)} dropped (reasons above"
               + (f", and as comments in {out})" if out else ")"), err=report_to_stderr)
    if out is not None:
        click.echo(f"check it: s2xr doctor --offline --config {out}", err=report_to_stderr)
