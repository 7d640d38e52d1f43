"""The ``s2xr`` command line: a thin click layer over ``pipelines`` jobs.

Each sub-command lives in a module named for what it does and is registered in
:data:`COMMANDS`; only this module configures logging. Sub-command modules are imported when
their command runs (or shows its own help), never for ``s2xr --help`` (which reads the
summaries from their source) or ``s2xr --version``, so these load neither xarray nor Dask.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import json
import logging
import sys
from collections.abc import Iterator, MutableMapping
from datetime import UTC, datetime
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import TypeGuard

import click

from s2xr.errors import S2xrError, explain_io_error

# command name: (module, attribute); each attribute is a click command (or group).
COMMANDS: dict[str, tuple[str, str]] = {
    "chip": ("pipelines.chip_cmd", "chip"),
    "demo": ("pipelines.demo_cmd", "demo"),
    "ops-status": ("pipelines.ops_cmd", "ops_status"),
    "ops": ("pipelines.ops_cmd", "ops"),
    "prune": ("pipelines.ops_cmd", "prune"),
    "publish-stac": ("pipelines.ops_cmd", "publish_stac_cmd"),
    "qa-report": ("pipelines.ops_cmd", "qa_report"),
    "collect-ais": ("pipelines.ais_cmd", "collect_ais"),
    "predict-overpasses": ("pipelines.plan_cmd", "predict_overpasses"),
    "doctor": ("pipelines.maint_cmd", "doctor"),
    "vacuum": ("pipelines.maint_cmd", "vacuum"),
    "publish": ("pipelines.maint_cmd", "publish"),
    "run": ("pipelines.run_cmd", "run"),
    "dataset-card": ("pipelines.dataset_cmd", "dataset_card"),
    "export-labels": ("pipelines.dataset_cmd", "export_labels"),
    "dashboard": ("pipelines.dashboard_cmd", "dashboard"),
    "migrate-config": ("pipelines.migrate_cmd", "migrate_config_cmd"),
}


def _is_command_call(node: ast.expr) -> TypeGuard[ast.Call]:
    """``@click.command(...)`` / ``@click.group(...)`` (or ``@group.command(...)``)."""
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    return name in ("command", "group")


def source_help(module: str, attr: str) -> tuple[str | None, str | None] | None:
    """``(help, short_help)`` of the click command ``module.attr`` read from the module's
    source (the decorator's ``help=``/``short_help=`` strings, else the docstring) without
    importing it; None when the source or the function cannot be found."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == attr:
            kw = {k.arg: k.value.value for d in node.decorator_list if _is_command_call(d)
                  for k in d.keywords
                  if k.arg in ("help", "short_help") and isinstance(k.value, ast.Constant)
                  and isinstance(k.value.value, str)}
            return kw.get("help") or ast.get_docstring(node), kw.get("short_help")
    return None


class LazyCommands(MutableMapping[str, click.Command]):
    """``Group.commands`` that imports a command's module on first look-up (``get``,
    ``[]``), while names, membership and ``--help`` summaries need no import."""

    def __init__(self, lazy: dict[str, tuple[str, str]]) -> None:
        self._lazy = dict(lazy)
        self._loaded: dict[str, click.Command] = {}

    def __getitem__(self, name: str) -> click.Command:
        if name not in self._loaded:
            module, attr = self._lazy[name]  # KeyError for an unknown name
            cmd = getattr(importlib.import_module(module), attr)
            if not isinstance(cmd, click.Command) or cmd.name != name:
                raise RuntimeError(f"COMMANDS[{name!r}]: {module}.{attr} is not the click "
                                   f"command {name!r}")
            self._loaded[name] = cmd
        return self._loaded[name]

    def __setitem__(self, name: str, cmd: click.Command) -> None:
        self._loaded[name] = cmd

    def __delitem__(self, name: str) -> None:
        if name not in self:
            raise KeyError(name)
        self._loaded.pop(name, None)
        self._lazy.pop(name, None)

    def __contains__(self, name: object) -> bool:
        return name in self._loaded or name in self._lazy

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys([*self._lazy, *self._loaded]))

    def __len__(self) -> int:
        return len(self._lazy.keys() | self._loaded.keys())

    def short_help(self, name: str, limit: int) -> str | None:
        """The command's one-line help as click shows it (None if hidden); for a command not
        loaded yet it is read from the source, not imported."""
        if name not in self._loaded:
            found = source_help(*self._lazy[name])
            if found is not None:
                help_, short = found
                return click.Command(name, help=help_, short_help=short).get_short_help_str(limit)
        cmd = self[name]
        return None if cmd.hidden else cmd.get_short_help_str(limit)


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
    # stac_io/stac: rustac's Rust crates (publish-stac), which log a whole ItemCollection
    for noisy in ("rasterio", "urllib3", "distributed", "asyncio", "fsspec", "bokeh", "tornado",
                  "websockets", "stac_io", "stac"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


class _Group(click.Group):
    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list of ``--help`` from the summaries (see :class:`LazyCommands`)."""
        commands = self.commands
        if not isinstance(commands, LazyCommands):
            return super().format_commands(ctx, formatter)
        names = self.list_commands(ctx)
        if not names:
            return None
        limit = formatter.width - 6 - max(len(n) for n in names)
        rows = [(n, h) for n in names if (h := commands.short_help(n, limit)) is not None]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)
        return None

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


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    import s2xr

    click.echo(f"s2xr {s2xr.__version__}")
    ctx.exit()


@click.group(cls=_Group, commands=LazyCommands(COMMANDS))
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors.")
@click.option("--log-file", envvar="S2XR_LOG_FILE", default=None,
              type=click.Path(dir_okay=False),
              help="Also log to this file (rotated at 10 MB, 5 kept). Env: S2XR_LOG_FILE.")
@click.option("--log-json", is_flag=True, envvar="S2XR_LOG_JSON",
              help="Log JSON lines instead of text. Env: S2XR_LOG_JSON=1.")
@click.option("--version", is_flag=True, expose_value=False, is_eager=True,
              callback=_print_version, help="Print `s2xr <version>` and exit.")
def main(verbose: int, quiet: bool, log_file: str | None, log_json: bool) -> None:
    """s2xr: Sentinel-2 + AIS ship chips as ML-ready xarray/Zarr datasets."""
    configure_logging(verbose, quiet, log_file=log_file, json_lines=log_json)


if __name__ == "__main__":  # pragma: no cover
    main()
