"""Every ``s2xr run`` publishes its progress where others can see it: ``{root}/.s2xr-run.json``
(the dataset's workspace for an object store root; never synced). The file holds the run's
pid, id, stage, message, ``done``/``total`` ``unit`` and the last log lines. It is rewritten
at most once a second and at every stage change (temp file, then renamed).

A run started from the CLI, cron or systemd shows this way in the dashboard, which reads
it with :func:`read_run_status`. While the run is alive (its pid exists and its state is
``running``) the dashboard shows its stage, counts, ETA and log tail, as it does for its own
jobs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pipelines.run_types import RunControl
from s2xr.store.layout import DatasetLayout, atomic_write_text

log = logging.getLogger(__name__)

LOGGERS = ("s2xr", "pipelines")
LOG_LINES = 60


class RunStatusFile(logging.Handler):
    """Writes one run's status file (see the module docstring): subscribed to its
    :class:`RunControl` and attached to the package loggers for the log tail."""

    def __init__(self, path: Path, run_id: str, *, min_interval_s: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(logging.INFO)
        self.path, self.run_id = path, run_id
        self.min_interval_s, self.clock = min_interval_s, clock
        self.lines: deque[str] = deque(maxlen=LOG_LINES)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s",
                                            "%H:%M:%S"))
        self._snap: dict[str, Any] = {}
        self._last = -float("inf")
        self._write_lock = threading.Lock()
        self.started = time.time()

    def emit(self, record: logging.LogRecord) -> None:
        if record.name == __name__:  # its own records (a failed write) would loop
            return
        with contextlib.suppress(Exception):
            self.lines.append(self.format(record))

    def on_snapshot(self, snap: dict[str, Any]) -> None:
        """A :class:`RunControl` listener: write now on a stage change, else at most every
        ``min_interval_s``."""
        stage_changed = snap.get("stage") != self._snap.get("stage")
        self._snap = dict(snap)
        if stage_changed or self.clock() - self._last >= self.min_interval_s:
            self.write("running")

    def write(self, state: str, snap: dict[str, Any] | None = None) -> None:
        """Write the status file now (``snap``: the run's latest snapshot, if newer than
        the last one this publisher heard)."""
        if snap is not None:
            self._snap = dict(snap)
        doc = {"pid": os.getpid(), "run_id": self.run_id, "state": state,
               "started": self.started, "updated": time.time(),
               **{k: self._snap.get(k) for k in ("stage", "message", "done", "total", "unit",
                                                  "since", "since_done")},
               "log": list(self.lines)}
        with self._write_lock:
            try:
                atomic_write_text(self.path, json.dumps(doc, default=str))
            except OSError as exc:  # a full disk must not stop the run
                log.warning("run status %s not written: %s", self.path, exc)
            self._last = self.clock()


@contextlib.contextmanager
def publish_run_status(layout: DatasetLayout, control: RunControl, run_id: str
                       ) -> Iterator[RunStatusFile]:
    """Publish the run's status file while the block runs; its final state (``done``,
    ``stopped`` or ``failed``) when it ends."""
    pub = RunStatusFile(layout.run_status, run_id)
    control.subscribe(pub.on_snapshot)
    for name in LOGGERS:
        logging.getLogger(name).addHandler(pub)
    state = "failed"
    try:
        pub.on_snapshot(control.snapshot())
        yield pub
        state = "stopped" if control.stopped else "done"
    finally:
        control.unsubscribe(pub.on_snapshot)
        for name in LOGGERS:
            logging.getLogger(name).removeHandler(pub)
        pub.write(state, control.snapshot())


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def read_run_status(layout: DatasetLayout) -> dict[str, Any] | None:
    """The dataset's last published run status, with ``live`` (its state is ``running``
    and its process exists), or None when no run published one."""
    try:
        doc = dict(json.loads(layout.run_status.read_text()))
    except (FileNotFoundError, ValueError):
        return None
    doc["live"] = doc.get("state") == "running" and _alive(int(doc.get("pid") or 0))
    return doc
