"""Choose the Dask scheduler for a job: threads (default), processes, synchronous, a local
cluster, or an existing ``distributed`` scheduler by address."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import dask

from s2xr.config import DaskConfig

log = logging.getLogger(__name__)


@contextlib.contextmanager
def use_scheduler(cfg: DaskConfig) -> Iterator[str]:
    """Context in which ``.compute()`` runs on the configured scheduler; yields a label."""
    sched = cfg.scheduler
    if sched in ("threads", "processes", "synchronous"):
        with dask.config.set(scheduler=sched):
            log.info("dask scheduler: %s", sched)
            yield sched
        return
    from distributed import Client, LocalCluster

    if sched == "local-cluster":
        with LocalCluster(n_workers=cfg.n_workers, threads_per_worker=cfg.threads_per_worker,
                          processes=True, dashboard_address="127.0.0.1:0",
                          host="127.0.0.1") as cluster, Client(cluster) as client:
            log.info("dask local cluster: %d worker(s), dashboard %s", cfg.n_workers,
                     client.dashboard_link)
            yield f"local-cluster ({cfg.n_workers} workers)"
        return
    with Client(sched, timeout="20s") as client:
        n = len(client.scheduler_info().get("workers", {}))
        log.info("dask cluster at %s: %d worker(s)", sched, n)
        yield f"{sched} ({n} workers)"
