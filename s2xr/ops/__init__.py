"""Operations: the SQLite ops DB (runs, AIS observations, chip jobs) with retries."""

from s2xr.ops.db import SCHEMA_VERSION, connect, migrate
from s2xr.ops.jobs import JobStore, ManualClock, SystemClock, backoff

__all__ = ["SCHEMA_VERSION", "JobStore", "ManualClock", "SystemClock", "backoff", "connect",
           "migrate"]
