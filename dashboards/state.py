"""The process-wide job manager shared by every dashboard session.

One :class:`JobManager` per served config owns at most one background job thread (a batch or
continuous run, a chip job from an uploaded file, an ops retry pass, a prune, a QA report, a
world build), its :class:`~pipelines.run_job.RunControl` and a bounded tail of the log
records of ``s2xr``/``pipelines``/``dashboards``. Sessions poll :meth:`JobManager.status` and
:meth:`JobManager.log_lines`; nothing here touches Panel widgets, so it is tested without a
browser. Get the shared instance with :func:`get_manager` (cached with ``pn.state.as_cached``).
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.run_job import RunControl, RunOptions, run_batch, run_continuous
from s2xr.config import Config, load_config

log = logging.getLogger(__name__)

CONFIG_ENV = "S2XR_DASHBOARD_CONFIG"
CAPTURED_LOGGERS = ("s2xr", "pipelines", "dashboards")
LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


class JobBusyError(RuntimeError):
    """A job is already running; the dashboard runs one at a time."""


class LogTail(logging.Handler):
    """A logging handler keeping the last ``maxlen`` formatted records in memory.

    ``seq`` counts every record ever seen, so a view can tell whether anything is new."""

    def __init__(self, maxlen: int = 400, level: int = logging.INFO) -> None:
        super().__init__(level)
        self.records: deque[str] = deque(maxlen=maxlen)
        self.seq = 0
        self.setFormatter(logging.Formatter(LOG_FORMAT, "%H:%M:%S"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:  # never let a bad record break the run
            self.handleError(record)
            return
        self.records.append(line)  # handle() holds self.lock around emit()
        self.seq += 1

    def lines(self, n: int | None = None) -> list[str]:
        self.acquire()
        try:
            out = list(self.records)
        finally:
            self.release()
        return out[-n:] if n else out


def attach_log_tail(tail: LogTail, names: Iterable[str] = CAPTURED_LOGGERS) -> list[str]:
    """Add ``tail`` to the package loggers; lower them to INFO when nothing set a level
    (an app served by ``panel serve`` has no logging configured). Returns the names of the
    loggers whose level it set (for :func:`detach_log_tail`)."""
    lowered = []
    for name in names:
        lg = logging.getLogger(name)
        if tail not in lg.handlers:
            lg.addHandler(tail)
        if lg.level == logging.NOTSET:
            lg.setLevel(logging.INFO)
            lowered.append(name)
    return lowered


def detach_log_tail(tail: LogTail, names: Iterable[str] = CAPTURED_LOGGERS,
                    lowered: Iterable[str] = ()) -> None:
    """Remove ``tail`` again and reset the levels :func:`attach_log_tail` set."""
    for name in names:
        logging.getLogger(name).removeHandler(tail)
    for name in lowered:
        logging.getLogger(name).setLevel(logging.NOTSET)


@dataclass(frozen=True)
class JobInfo:
    """What the current (or last) job is."""

    kind: str
    description: str
    started: float
    ended: float | None = None
    error: str | None = None
    result: str | None = None


class JobManager:
    """The dashboard's background jobs, one at a time, shared by all sessions.

    Thread-safe. ``version`` increases on every change of the job's state (stage, progress,
    start, end), so a session knows when to refresh what depends on it."""

    def __init__(self, cfg: Config, *, config_source: str = "<dict>",
                 log_maxlen: int = 400) -> None:
        self.base_config = cfg
        self.config_source = config_source
        self._lock = threading.RLock()
        self._thread: threading.Thread | None = None
        self._control = RunControl()
        self._job: JobInfo | None = None
        self._version = 0
        self._results: dict[str, Any] = {}
        self.tail = LogTail(log_maxlen)
        self._lowered = attach_log_tail(self.tail)

    # -- state ------------------------------------------------------------------------
    @property
    def root(self) -> Path:
        return Path(self.base_config.storage.root)

    @property
    def control(self) -> RunControl:
        with self._lock:
            return self._control

    @property
    def version(self) -> int:
        with self._lock:
            return self._version

    def _bump(self, _snap: Any = None) -> None:
        with self._lock:
            self._version += 1

    @property
    def busy(self) -> bool:
        with self._lock:
            return self._thread is not None and self._thread.is_alive()

    def status(self) -> dict[str, Any]:
        """``state`` (idle / running / stopping / done / stopped / failed), the job's
        ``kind`` and ``description``, the run's ``stage``, ``message``, ``done``/``total``
        ``unit`` counted ``since``, ``error`` and ``result`` text, ``elapsed_s`` and
        ``version``."""
        with self._lock:
            snap = self._control.snapshot()
            job = self._job
            busy = self._thread is not None and self._thread.is_alive()
            version = self._version
        if job is None:
            state = "idle"
        elif busy:
            state = "stopping" if snap["stop_requested"] else "running"
        elif job.error:
            state = "failed"
        elif snap["stop_requested"]:
            state = "stopped"
        else:
            state = "done"
        end = job.ended if job and job.ended else time.time()
        return {"state": state, "kind": job.kind if job else "",
                "description": job.description if job else "",
                "stage": snap["stage"], "message": snap["message"], "done": snap["done"],
                "total": snap["total"], "unit": snap.get("unit", ""),
                "since": snap.get("since"), "since_done": snap.get("since_done", 0),
                "error": job.error if job else None,
                "result": job.result if job else None,
                "elapsed_s": (end - job.started) if job else 0.0, "version": version}

    def result(self, kind: str) -> Any:
        """The return value of the last finished job of ``kind`` (or None)."""
        with self._lock:
            return self._results.get(kind)

    def log_lines(self, n: int | None = 200) -> list[str]:
        return self.tail.lines(n)

    # -- jobs -------------------------------------------------------------------------
    def start(self, kind: str, description: str, fn: Callable[[RunControl], Any], *,
              summarize: Callable[[Any], str] | None = None) -> RunControl:
        """Run ``fn(control)`` in a background thread; raise :class:`JobBusyError` if a job
        is running. Returns the job's fresh :class:`RunControl`."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                what = self._job.description if self._job else "?"
                raise JobBusyError(f"a job is running ({what}); stop it or wait for it to "
                                   "finish")
            control = RunControl()
            control.subscribe(self._bump)
            self._control = control
            self._job = JobInfo(kind=kind, description=description, started=time.time())
            self._version += 1
            thread = threading.Thread(target=self._run, name=f"s2xr-dashboard-{kind}",
                                      args=(kind, fn, control, summarize), daemon=True)
            self._thread = thread
        log.info("dashboard job started: %s", description)
        thread.start()
        return control

    def _run(self, kind: str, fn: Callable[[RunControl], Any], control: RunControl,
             summarize: Callable[[Any], str] | None) -> None:
        error = text = None
        value = None
        try:
            value = fn(control)
            text = summarize(value) if summarize else (None if value is None else str(value))
        except Exception as exc:  # shown in the status view and the log tail
            error = f"{type(exc).__name__}: {exc}"
            log.error("dashboard job %s failed: %s\n%s", kind, error,
                      "".join(traceback.format_exception(exc)).rstrip())
            if control.snapshot()["stage"] not in ("failed", "done", "stopped"):
                control.set_stage("failed", error)
        else:
            if control.snapshot()["stage"] not in ("done", "stopped", "failed"):
                control.set_stage("stopped" if control.stopped else "done", text or "")
            log.info("dashboard job %s finished%s", kind, f": {text}" if text else "")
        with self._lock:
            assert self._job is not None
            self._job = JobInfo(kind=self._job.kind, description=self._job.description,
                                started=self._job.started, ended=time.time(), error=error,
                                result=text)
            if error is None:
                self._results[kind] = value
            self._version += 1

    def stop(self) -> bool:
        """Ask the running job to stop after its current step; False if nothing runs."""
        with self._lock:
            running = self._thread is not None and self._thread.is_alive()
            control = self._control
        if running:
            log.info("stop requested from the dashboard")
            control.request_stop()
        return running

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the current job; True when no job is running afterwards."""
        with self._lock:
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return not self.busy

    def start_run(self, cfg: Config, opts: RunOptions, *, continuous: bool = False,
                  interval_min: float = 30.0, max_cycles: int | None = None) -> RunControl:
        """Start ``run_batch`` (or ``run_continuous``) with ``cfg`` and ``opts``."""
        if continuous:
            desc = f"continuous run every {interval_min:g} min"

            def fn(control: RunControl) -> Any:
                return run_continuous(cfg, opts, interval_min=interval_min, control=control,
                                      max_cycles=max_cycles)

            return self.start("run", desc, fn, summarize=lambda rs: f"{len(rs)} cycle(s)")

        def batch(control: RunControl) -> Any:
            return run_batch(cfg, opts, control=control)

        def summary(res: Any) -> str:
            return f"run {res.run_id}: {res.summary}" + (
                " (stopped early)" if res.stopped else "")

        return self.start("run", "batch run", batch, summarize=summary)

    def close(self) -> None:
        """Stop the job, wait a little, and detach the log handler."""
        self.stop()
        self.join(10)
        detach_log_tail(self.tail, lowered=self._lowered)


# ------------------------------------------------------------------------------- config
def default_config_path() -> Path | None:
    """``$S2XR_DASHBOARD_CONFIG``, else the repository's ``configs/demo.yaml`` (the embedded
    world), else None (built-in defaults)."""
    env = os.environ.get(CONFIG_ENV)
    if env:
        return Path(env)
    demo = Path(__file__).resolve().parent.parent / "configs" / "demo.yaml"
    return demo if demo.is_file() else None


def config_path_from_argv(argv: list[str] | None = None) -> Path | None:
    """``--config PATH`` from the app's arguments (``panel serve app.py --args --config
    PATH``), else :func:`default_config_path`."""
    argv = sys.argv[1:] if argv is None else argv
    for k, a in enumerate(argv):
        if a == "--config" and k + 1 < len(argv):
            return Path(argv[k + 1])
        if a.startswith("--config="):
            return Path(a.split("=", 1)[1])
    return default_config_path()


def _make_manager(config_path: str) -> JobManager:
    path = Path(config_path) if config_path else None
    cfg = load_config(path) if path else load_config(None)
    log.info("dashboard: config %s, dataset root %s", path or "<defaults>",
             cfg.storage.root)
    manager = JobManager(cfg, config_source=str(path or "<defaults>"))
    atexit.register(manager.close)  # server shutdown: ask the job to stop, wait a little
    return manager


def get_manager(config_path: str | Path | None = None) -> JobManager:
    """The process-wide :class:`JobManager` for a config file (created once, shared by all
    sessions through ``pn.state.as_cached``)."""
    import panel as pn

    path = Path(config_path) if config_path else config_path_from_argv()
    key = str(path.resolve()) if path else ""
    return pn.state.as_cached("s2xr-dashboard-job-manager", _make_manager, config_path=key)
