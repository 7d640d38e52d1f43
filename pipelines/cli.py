"""The ``s2xr`` command line: a thin click layer over ``pipelines`` jobs.

Each sub-command lives in a module named for what it does and is registered here; only this
module configures logging.
"""

from __future__ import annotations

import importlib
import json
import logging
import sys
from datetime import UTC, datetime
from logging.handlers import RotatingFileHandler
from pathlib import Path

import click

from s2xr.errors import S2xrError, explain_io_error

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
    ("pipelines.plan_cmd", "predict_overpasses"),
    ("pipelines.maint_cmd", "doctor"),
    ("pipelines.maint_cmd", "vacuum"),
    ("pipelines.maint_cmd", "publish"),
    ("pipelines.run_cmd", "run"),
    ("pipelines.dataset_cmd", "dataset_card"),
    ("pipelines.dataset_cmd", "export_labels"),
    ("pipelines.dashboard_cmd", "dashboard"),
]


class JsonLineFormatter(logging.Formatter):
    """One JSON object per record: time (UTC ISO 8601), level, logger, message, and the
    exception text when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        out = {"time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(
                   timespec="milliseconds").replace("+00:00", "Z"),
               "level": record.levelname, "logger": record.name,
               "message": record.getMessage(), "pid": record.process}
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(verbose: int = 0, quiet: bool = False, *, log_file: str | None = None,
                      json_lines: bool = False, max_bytes: int = 10 * 2**20,
                      backups: int = 5) -> None:
    """Configure the root logger (stderr, and a rotating ``log_file`` if given; text or JSON
    lines). Idempotent: handlers it added before are replaced, never duplicated. Library
    modules only create loggers."""
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_s2xr", False):
            root.removeHandler(h)
            h.close()
    stream = logging.StreamHandler(sys.stderr)
    stream.setFormatter(JsonLineFormatter() if json_lines
                        else logging.Formatter(TEXT_FORMAT, "%H:%M:%S"))
    handlers: list[logging.Handler] = [stream]
    if log_file:
        path = Path(log_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        rotating = RotatingFileHandler(path, maxBytes=max_bytes, backupCount=backups,
                                       encoding="utf-8")
        rotating.setFormatter(JsonLineFormatter() if json_lines
                              else logging.Formatter(TEXT_FORMAT))
        handlers.append(rotating)
    for h in handlers:
        h._s2xr = True  # type: ignore[attr-defined]
        root.addHandler(h)
    root.setLevel(level)
    for noisy in ("rasterio", "urllib3", "distributed", "asyncio", "fsspec", "bokeh", "tornado",
                  "websockets"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except S2xrError as exc:
            explained = explain_io_error(exc) if isinstance(exc, OSError) else None
            click.secho(f"error: {explained or exc}", fg="red", err=True)
            ctx.exit(2)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as exc:
            # storage failures are one line, not a traceback; anything else stays a bug
            explained = explain_io_error(exc)
            if explained is None:
                raise
            logging.getLogger(__name__).debug("storage failure", exc_info=True)
            click.secho(f"error: {explained}", fg="red", err=True)
            ctx.exit(1)


@click.group(cls=_Group)
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors.")
@click.option("--log-file", envvar="S2XR_LOG_FILE", default=None,
              type=click.Path(dir_okay=False),
              help="Also log to this file (rotated at 10 MB, 5 kept). Env: S2XR_LOG_FILE.")
@click.option("--log-json", is_flag=True, envvar="S2XR_LOG_JSON",
              help="Log JSON lines instead of text. Env: S2XR_LOG_JSON=1.")
@click.version_option(package_name="s2xr")
def main(verbose: int, quiet: bool, log_file: str | None, log_json: bool) -> None:
    """s2xr: Sentinel-2 + AIS ship chips as ML-ready xarray/Zarr datasets."""
    configure_logging(verbose, quiet, log_file=log_file, json_lines=log_json)


for _module, _attr in COMMANDS:
    main.add_command(getattr(importlib.import_module(_module), _attr))


if __name__ == "__main__":  # pragma: no cover
    main()
