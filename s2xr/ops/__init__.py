"""Operations: the SQLite ops DB (runs, chip jobs, capture windows) with retries, the
dataset's AIS observations (:mod:`s2xr.ops.observations`), prune (:mod:`s2xr.ops.prune`)
and maintenance (:mod:`s2xr.ops.maintenance`)."""

from s2xr.ops.db import SCHEMA_VERSION, connect, migrate
from s2xr.ops.jobs import JobStore, ManualClock, SystemClock, backoff

__all__ = ["SCHEMA_VERSION", "JobStore", "ManualClock", "SystemClock", "backoff", "connect",
           "migrate"]
