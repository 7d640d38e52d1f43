"""The dashboard's actions besides runs: an uploaded AIS file, prune, retry, QA report,
building the embedded world. Each runs as a :class:`~dashboards.state.JobManager` job (in its
thread) and goes through the same library/pipeline calls as the CLI commands.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from pipelines.chip_job import ChipJobResult, run_chip_job
from pipelines.dashboard_cmd import MB
from pipelines.run_job import RunControl, serve_embedded_stac
from s2xr.ais import read_ais_table
from s2xr.config import Config
from s2xr.errors import InputError, S2xrError
from s2xr.ops.prune import PruneResult
from s2xr.store.layout import DatasetLayout, atomic_write

log = logging.getLogger(__name__)

UPLOAD_SUFFIXES = (".csv", ".xlsx", ".xls")
DEFAULT_MAX_UPLOAD_MB = 50.0


# ------------------------------------------------------------------------------ upload
@dataclass
class UploadCheck:
    """An uploaded AIS file, saved and validated like any AIS file."""

    path: Path | None
    filename: str
    n_bytes: int
    n_points: int = 0
    n_ships: int = 0
    n_rejects: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.n_points > 0

    def summary(self) -> str:
        if self.error:
            return f"Refused {self.filename}: {self.error}"
        text = (f"{self.filename}: {self.n_points} valid point(s) of {self.n_ships} "
                f"ship(s), {self.n_rejects} rejected row(s)")
        return f"Refused {text}: nothing to chip" if not self.n_points else f"Accepted {text}"


def safe_upload_name(filename: str) -> str:
    """The basename with only ``[A-Za-z0-9._-]`` (no directories, no traversal)."""
    base = Path(str(filename).replace("\\", "/")).name
    clean = re.sub(r"[^A-Za-z0-9._-]+", "_", base).lstrip(".")
    return clean or "upload"


def save_upload(root: Path, filename: str, data: bytes, *,
                max_mb: float = DEFAULT_MAX_UPLOAD_MB) -> UploadCheck:
    """Check size (``max_mb``, MB of 10⁶ bytes) and type, write
    ``{root}/ais/uploads/{time}-{name}`` and validate it with
    :func:`~s2xr.ais.read_ais_table` (points, rejected rows and their reasons)."""
    name = safe_upload_name(filename or "upload")
    n = len(data or b"")
    check = UploadCheck(path=None, filename=name, n_bytes=n)
    suffix = Path(name).suffix.lower()
    if suffix not in UPLOAD_SUFFIXES:
        check.error = (f"unsupported file type {suffix or '(none)'}; upload AIS as "
                       f"{', '.join(UPLOAD_SUFFIXES)}")
        return check
    if n == 0:
        check.error = "the file is empty"
        return check
    if n > max_mb * MB:
        check.error = (f"file is {n / MB:.1f} MB; the upload limit is {max_mb:g} MB; use "
                       "`s2xr chip --ais FILE` for large files")
        return check
    path = DatasetLayout(Path(root)).ais_uploads / f"{time.strftime('%Y%m%dT%H%M%S')}-{name}"
    atomic_write(path, lambda p: p.write_bytes(data))
    check.path = path
    try:
        table = read_ais_table(path)
    except S2xrError as exc:
        check.error = str(exc)
        return check
    except Exception as exc:  # a reader blew up on garbage: still a clear message
        check.error = f"cannot read the file as AIS: {type(exc).__name__}: {exc}"
        return check
    check.n_points = len(table.points)
    check.n_ships = int(table.points["mmsi"].nunique()) if len(table.points) else 0
    check.n_rejects = len(table.rejects)
    if len(table.rejects) and "reason" in table.rejects:
        reasons = table.rejects["reason"].astype(str).str.split(" \\(").str[0]
        check.reasons = {str(k): int(v) for k, v in reasons.value_counts().head(5).items()}
    log.info("upload %s: %s", path, check.summary())
    return check


@contextlib.contextmanager
def stac_for(cfg: Config, control: RunControl | None = None) -> Iterator[Config]:
    """``cfg`` itself, or for the embedded world (``stac.api_url: null``) ``cfg`` pointed at
    the world's STAC API, served on 127.0.0.1 while the block runs (like ``s2xr run``)."""
    with serve_embedded_stac(cfg, control) as (run_cfg, _world):
        yield run_cfg


def chip_upload(cfg: Config, path: Path, control: RunControl) -> ChipJobResult:
    """``s2xr chip --ais PATH`` for an uploaded (and validated) file."""
    with stac_for(cfg, control) as run_cfg:
        control.set_stage("chip", f"uploaded AIS {path.name}")
        return run_chip_job(run_cfg, path, progress=control.progress)


# ------------------------------------------------------------------------------ prune
def prune_observations(cfg: Config, upload: Path | None) -> pd.DataFrame:
    """The AIS to prune against: an uploaded file, or the dataset's AIS observations."""
    from s2xr.ops.observations import ObservationStore
    from s2xr.ops.prune import load_observations

    layout = DatasetLayout.of(cfg)
    if upload is None and not ObservationStore(layout).exists():
        raise InputError(f"no AIS observations at {layout.ais_observations} yet: run a batch "
                         "(or upload an AIS file) first")
    return load_observations(layout, upload)


FORCE_HINT = "tick “Force” to remove them anyway"


def refusal_text(res: PruneResult) -> str | None:
    """The prune guard's refusal in the dashboard's words (None: no refusal)."""
    return res.refusal_message(check="in the preview list", force=FORCE_HINT)


def prune(cfg: Config, *, time_tol_min: float, dist_tol_m: float, dry_run: bool,
          upload: Path | None = None, control: RunControl | None = None,
          force: bool = False) -> PruneResult:
    """``s2xr prune [--dry-run] [--force]``: the chips (``doomed``: index rows +
    ``prune_reason``) that would be / were moved to ``pruned/…`` from every store at once,
    under the dataset lock. Above ``ops.prune_max_share`` a prune is refused
    (:class:`~s2xr.ops.prune.PruneRefusedError`) unless ``force``."""
    from s2xr.ops.prune import PruneRefusedError, prune_chips
    from s2xr.store.consistency import dataset_lock

    if control is not None:
        control.set_stage("chip", "prune preview (dry run)" if dry_run else "prune")
    obs = prune_observations(cfg, upload)
    try:
        with dataset_lock(Path(cfg.storage.root)):
            res = prune_chips(cfg.storage.root, obs, time_tol_min=time_tol_min,
                              dist_tol_m=dist_tol_m, dry_run=dry_run,
                              max_share=cfg.ops.prune_max_share, force=force)
    except PruneRefusedError as exc:
        raise PruneRefusedError(refusal_text(exc.result) or str(exc), exc.result) from None
    cols = [c for c in ("chip_id", "mmsi", "scene_datetime", "qa_pass", "prune_reason")
            if c in res.doomed]
    res.doomed = pd.DataFrame(res.doomed[cols]).reset_index(drop=True)
    return res


# ------------------------------------------------------------------------------ ops
@dataclass
class RetryResult:
    due: int = 0
    retried: int = 0
    passed: int = 0
    deferred: int = 0
    skipped: int = 0
    lines: list[str] = field(default_factory=list)

    def summary(self) -> str:
        if not self.due:
            return "no job is due for a retry"
        return (f"{self.due} due job(s): {self.retried} retried → {self.passed} chip(s) "
                f"passed, {self.deferred} deferred, {self.skipped} skipped")


def retry_due(cfg: Config, limit: int | None, control: RunControl) -> RetryResult:
    """``s2xr ops retry --limit N``: re-run failed/deferred jobs whose back-off elapsed."""
    from s2xr.ops import JobStore

    control.set_stage("chip", f"ops retry (limit {limit})")
    due = JobStore(DatasetLayout.of(cfg).ops_db, cfg.ops).due(limit)
    res = RetryResult(due=len(due))
    if due.empty:
        return res
    with stac_for(cfg, control) as run_cfg:
        control.set_stage("chip", f"ops retry of {len(due)} job(s)")
        for source, jobs in due.groupby("ais_source", dropna=False):
            if control.stopped:
                break
            if not isinstance(source, str) or not Path(source).is_file():
                res.skipped += len(jobs)
                res.lines.append(f"{len(jobs)} job(s) without a readable AIS source "
                                 f"({source}): skipped")
                continue
            out = run_chip_job(run_cfg, source, only_mmsi=set(jobs["mmsi"].astype(int)),
                               progress=control.progress)
            res.retried += len(jobs)
            res.passed += out.n_passed
            res.deferred += out.n_deferred
            res.lines.append(f"{source}: {len(jobs)} job(s) retried → {out.n_passed} passed")
    for line in res.lines:
        log.info("ops retry: %s", line)
    return res


def qa_report(cfg: Config, control: RunControl) -> dict[str, Any]:
    """``s2xr qa-report``: write ``reports/qa_report.html``; returns its path and numbers."""
    from s2xr.report import summarize, write_qa_report

    control.set_stage("chip", "QA report")
    path = write_qa_report(cfg.storage.root)
    s = summarize(Path(cfg.storage.root))
    return {"path": path, "n_chips": s.n_chips, "n_passed": s.n_passed,
            "failure_rate": s.failure_rate}


def build_embedded_world(cfg: Config, control: RunControl) -> str:
    """Render (or reuse) the embedded world under ``{storage.root}/world`` (what the first
    run would do), so the first screen can show it."""
    from s2xr.demo import build_world

    control.set_stage("world", "building the embedded world (synthetic)")
    world = build_world(DatasetLayout.of(cfg).world, cfg.demo, progress=control.progress)
    return f"embedded world: tile {world.tile}, {len(world.item_ids)} synthetic item(s)"
