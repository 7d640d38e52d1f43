"""A chip job through a real `dask scheduler` + `dask worker` started on 127.0.0.1."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines.chip_job import run_chip_job
from s2xr.config import build_config
from s2xr.demo.stac_server import free_port
from s2xr.store import open_chips, read_index

pytestmark = pytest.mark.slow


@contextlib.contextmanager
def _cluster(tmp_path: Path, n_workers: int, threads: int) -> Iterator[str]:
    """A `dask scheduler` and `dask worker --nworkers N` (behind nannies) on 127.0.0.1."""
    port = free_port()
    dask = str(Path(sys.executable).parent / "dask")
    addr = f"tcp://127.0.0.1:{port}"
    sched = subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                              "--no-dashboard"], cwd=tmp_path, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    worker = subprocess.Popen([dask, "worker", addr, "--nworkers", str(n_workers), "--nthreads",
                               str(threads), "--no-dashboard", "--host", "127.0.0.1"],
                              cwd=tmp_path, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        from distributed import Client

        deadline = time.monotonic() + 60
        while True:
            try:
                with Client(addr, timeout="2s") as c:
                    if len(c.scheduler_info()["workers"]) >= n_workers:
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


@pytest.fixture
def dask_cluster(tmp_path):
    with _cluster(tmp_path, 1, 2) as addr:
        yield addr


def _cfg(stac_url: str, root: Path, scheduler: str, **storage: object):
    return build_config({"stac": {"api_url": stac_url, "window_hours": 6,
                                  "collection": "sentinel-2-l2a"},
                         "storage": {"root": str(root), **storage},
                         "dask": {"scheduler": scheduler}}, environ={}, dotenv_path=None)


def test_chip_job_on_a_real_cluster(world, stac_server, dask_cluster, tmp_path):
    ais = pd.read_csv(world.ais_path)
    truth = world.truth()
    ships = truth.loc[truth.placement == "water", "mmsi"].drop_duplicates().head(8)
    ais = ais.loc[ais.mmsi.isin(ships)]

    def cfg(root, scheduler):
        return _cfg(stac_server.url, root, scheduler)

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


def _consistent(root: Path) -> set[str]:
    """The passed chips, after checking index == chip files == cube rows (raw cube)."""
    idx = read_index(root)
    passed = set(idx.loc[idx["qa_pass"].astype(bool), "chip_id"])
    tifs = {p.stem for p in (root / "chips").rglob("*.tif")}
    cube = [str(c) for c in open_chips(root / "chips.zarr")["chip_id"].values]
    assert tifs == passed and set(cube) == passed and len(cube) == len(passed)
    return passed


def test_a_worker_killed_mid_run_loses_no_chip(world, stac_server, tmp_path):
    """SIGKILL one of two workers while batches are being written: the scheduler runs its
    batches again on the other worker (a batch rewrites its own files and cube region), the
    run completes, the dataset is consistent and equals a threads run's."""
    import psutil

    ais = pd.read_csv(world.ais_path)
    truth = world.truth()
    ships = truth.loc[truth.placement == "water", "mmsi"].drop_duplicates().head(24)
    ais = ais.loc[ais.mmsi.isin(ships)]
    ref = run_chip_job(_cfg(stac_server.url, tmp_path / "threads", "threads", block_size=2),
                       ais)
    assert ref.n_chips >= 8
    root = tmp_path / "cluster"
    killed: list[int] = []
    with _cluster(tmp_path, 2, 1) as addr:
        from distributed import Client

        with Client(addr) as c:
            pids = sorted(c.run(os.getpid).values())
        stop = threading.Event()

        def kill_on_first_chip() -> None:
            while not stop.is_set():
                if any((root / "chips").rglob("*.tif")) if (root / "chips").exists() else False:
                    victim = psutil.Process(pids[0])
                    victim.send_signal(signal.SIGKILL)
                    killed.append(victim.pid)
                    return
                stop.wait(0.01)

        t = threading.Thread(target=kill_on_first_chip, daemon=True)
        t.start()
        try:
            res = run_chip_job(_cfg(stac_server.url, root, addr, block_size=2), ais)
        finally:
            stop.set()
            t.join(10)
    assert killed, "no worker was killed: the run wrote no chip before it ended"
    assert res.n_chips == ref.n_chips and res.n_passed == ref.n_passed
    assert _consistent(root) == _consistent(tmp_path / "threads")
