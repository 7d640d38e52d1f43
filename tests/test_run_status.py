"""A run's status file (.s2xr-run.json): written at each stage change and at most once per
interval in between (an injected clock), with the log tail; its final state when the run
ends; read back as live only while the run's process exists."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest

from pipelines.run_status import RunStatusFile, publish_run_status, read_run_status
from pipelines.run_types import RunControl
from s2xr.store.layout import DatasetLayout


def test_the_status_file_follows_the_run_and_ends_with_its_state(tmp_path):
    layout = DatasetLayout(tmp_path)
    control = RunControl()
    with publish_run_status(layout, control, "r1") as pub:
        now = [0.0]
        pub.clock = lambda: now[0]
        control.set_stage("chip", "3 window(s)")  # a stage change: written at once
        logging.getLogger("pipelines.run_job").warning("a record for the tail")
        doc = read_run_status(layout)
        assert doc["state"] == "running" and doc["stage"] == "chip" and doc["live"]
        control.progress(5, 111, "chips written")  # within the interval: not yet
        assert read_run_status(layout)["done"] == 0
        now[0] = 1.5
        control.progress(37, 111, "chips written")
        doc = read_run_status(layout)
        assert (doc["done"], doc["total"], doc["unit"]) == (37, 111, "chips written")
        assert any("a record for the tail" in ln for ln in doc["log"])
        control.set_stage("done", "37 new chip(s) passed")
    doc = read_run_status(layout)
    assert doc["state"] == "done" and doc["message"] == "37 new chip(s) passed"
    assert not doc["live"] and doc["pid"] > 0 and doc["run_id"] == "r1"
    control.progress(1, 2)  # the finished run's file no longer follows the control
    assert (read_run_status(layout)["state"], read_run_status(layout)["total"]) == ("done", 0)

    with pytest.raises(RuntimeError), publish_run_status(layout, control, "r2"):
        raise RuntimeError("boom")
    assert read_run_status(layout)["state"] == "failed"


def test_a_running_status_of_a_dead_process_is_not_live(tmp_path):
    layout = DatasetLayout(tmp_path)
    assert read_run_status(layout) is None
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead = int(proc.stdout)
    pub = RunStatusFile(layout.run_status, "r3")
    pub.write("running")
    doc = json.loads(layout.run_status.read_text())
    layout.run_status.write_text(json.dumps({**doc, "pid": dead}))
    assert not read_run_status(layout)["live"]  # killed runs do not stay "running"
