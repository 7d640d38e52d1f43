"""A chip job through a real `dask scheduler` + `dask worker` started on 127.0.0.1."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines.chip_job import run_chip_job
from s2xr.config import build_config
from s2xr.demo.stac_server import free_port
from s2xr.store import open_chips

pytestmark = pytest.mark.slow


@pytest.fixture
def dask_cluster(tmp_path):
    port = free_port()
    dask = str(Path(sys.executable).parent / "dask")
    addr = f"tcp://127.0.0.1:{port}"
    sched = subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                              "--no-dashboard"], cwd=tmp_path, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    worker = subprocess.Popen([dask, "worker", addr, "--nworkers", "1", "--nthreads", "2",
                               "--no-dashboard", "--host", "127.0.0.1"], cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        from distributed import Client

        deadline = time.monotonic() + 60
        while True:
            try:
                with Client(addr, timeout="2s") as c:
                    if c.scheduler_info()["workers"]:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("dask cluster did not come up")
            time.sleep(0.5)
        yield addr
    finally:
        for p in (worker, sched):
            p.terminate()
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()


def test_chip_job_on_a_real_cluster(world, stac_server, dask_cluster, tmp_path):
    ais = pd.read_csv(world.ais_path)
    truth = world.truth()
    ships = truth.loc[truth.placement == "water", "mmsi"].drop_duplicates().head(8)
    ais = ais.loc[ais.mmsi.isin(ships)]

    def cfg(root, scheduler):
        return build_config({"stac": {"api_url": stac_server.url, "window_hours": 6,
                                      "collection": "sentinel-2-l2a"},
                             "storage": {"root": str(root)},
                             "dask": {"scheduler": scheduler}}, environ={}, dotenv_path=None)

    on_cluster = run_chip_job(cfg(tmp_path / "cluster", dask_cluster), ais)
    assert on_cluster.scheduler.startswith(dask_cluster)
    assert on_cluster.n_chips > 0 and on_cluster.n_passed > 0
    local = run_chip_job(cfg(tmp_path / "threads", "threads"), ais)
    a, b = open_chips(tmp_path / "cluster"), open_chips(tmp_path / "threads")
    assert sorted(a.chip_id.values) == sorted(b.chip_id.values)
    a = a.sortby("chip_id")
    b = b.sortby("chip_id")
    np.testing.assert_array_equal(a.reflectance.values, b.reflectance.values)
    assert local.n_passed == on_cluster.n_passed
