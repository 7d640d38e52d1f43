"""End to end: chips cut and written to every store, against the cut alone.

    .venv/bin/python benchmarks/end_to_end.py                  # sparse N = 1000, 3 repeats
    .venv/bin/python benchmarks/end_to_end.py --quick          # 2048² scene, N = 100, < 1 min
    .venv/bin/python benchmarks/end_to_end.py --scheduler local-cluster
    .venv/bin/python benchmarks/end_to_end.py --no-s3              # local disk only

The scene and points are chip_throughput.py's (the embedded world at full tile size, N
sparse points over water). Per repeat, in this process: (cut) s2xr's cut alone, every chip
stored into memory (chip_throughput's method d); (write) the same chips cut, gated and
written by ``write_chips`` — Zarr cube, COG + GeoJSON + JSON + quicklook per chip,
GeoParquet index, daily footprints — under a fresh local root, each batch written by the
task that cut it; (s3) the same into a fresh prefix of a real S3 API on 127.0.0.1 (moto's
server, started here; skipped with ``--no-s3`` or when moto is not installed): chip files
put as objects and cube regions through Zarr's fsspec store by the tasks, the index pushed
from a local workspace (the S3 server's CPU time is reported: it shares this machine's
cores); (memory) the same into fsspec's in-memory store (``memory://``, threads only): the
object store code path without a server. Medians of the repeats.
``--scheduler local-cluster`` writes from two worker processes instead of the threads
scheduler. Ends with one JSON line
(``chips_per_s_local``, ``write_overhead`` = write ÷ cut − 1, ``chips_per_s_s3``,
``s3_vs_local`` = S3 time ÷ local time, ``s3_server_cpu_s``, ``chips_per_s_memory``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import chip_throughput as ct  # noqa: E402

from s2xr.chips import cut_chips  # noqa: E402
from s2xr.config import ChipSpec, GateConfig, StorageConfig  # noqa: E402
from s2xr.gate import gate_chips  # noqa: E402
from s2xr.scenes import stack_scenes  # noqa: E402
from s2xr.scenes.reader import reset_dataset_cache  # noqa: E402
from s2xr.store import write_chips  # noqa: E402


@contextlib.contextmanager
def scheduler(name: str) -> Any:
    import dask

    if name == "threads":
        with dask.config.set(scheduler="threads"):
            yield name
        return
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None, host="127.0.0.1") as cluster, \
            Client(cluster) as client:
        client.run(reset_dataset_cache)
        yield "local-cluster (2 workers × 1 thread)"


def write_once(stack: Any, plan: Any, storage: StorageConfig) -> tuple[float, int]:
    reset_dataset_cache()
    gated = gate_chips(cut_chips(stack, plan, ChipSpec()), GateConfig(enabled=False))
    t = time.perf_counter()
    summary = write_chips(gated, plan, storage, GateConfig(enabled=False))
    return time.perf_counter() - t, summary.n_passed


@contextlib.contextmanager
def s3_bucket(enabled: bool) -> Any:
    """A bucket on a local S3 (moto_server on 127.0.0.1) with this process's environment
    pointing at it → (its URL, the server's pid), or ``None``."""
    if not enabled:
        yield None
        return
    try:
        from s2xr.demo.s3_server import local_s3, s3_environ
    except ImportError:  # moto/s3fs: the test extra
        yield None
        return
    with local_s3() as s3, s3_environ(s3):
        s3.filesystem().mkdir("bench")
        yield "s3://bench", s3.pid


def cpu_seconds(pid: int) -> float:
    import psutil

    t = psutil.Process(pid).cpu_times()
    return float(t.user + t.system)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="2048² scene, N = 100, 1 repeat")
    ap.add_argument("--n", type=int, default=None, help="chips (default 1000; quick 100)")
    ap.add_argument("--repeats", type=int, default=None, help="default 3 (quick 1)")
    ap.add_argument("--scheduler", choices=("threads", "local-cluster"), default="threads")
    ap.add_argument("--no-s3", action="store_true", help="skip the S3 (moto) runs")
    args = ap.parse_args()
    n = args.n or (100 if args.quick else 1000)
    repeats = args.repeats or (1 if args.quick else 3)
    item, _ = ct.scene(args.quick)
    stack = stack_scenes([item], list(ct.BANDS))
    pts = ct.make_points(item, n, False, np.random.default_rng(7))
    plan = ct.plan_frame(item, pts, for_writing=True)
    cut_s, write_s, s3_s, mem_s, server_s = [], [], [], [], []
    with s3_bucket(not args.no_s3) as s3, scheduler(args.scheduler) as label, \
            tempfile.TemporaryDirectory(prefix="s2xr-e2e-ws-") as ws:
        for r in range(repeats):
            if args.scheduler == "threads":
                _, t_cut, _ = ct.timed(ct.method_d, stack, item, pts)
            else:
                from distributed import default_client

                _, t_cut, _ = ct.timed(ct.method_e, default_client(), stack, item, pts)
            cut_s.append(t_cut)
            with tempfile.TemporaryDirectory(prefix="s2xr-e2e-") as tmp:
                t_write, n_passed = write_once(stack, plan,
                                               StorageConfig(root=Path(tmp) / "ds"))
            if n_passed != n:
                raise SystemExit(f"{n_passed} of {n} chips written")
            write_s.append(t_write)
            line = (f"{label}: cut {t_cut:6.2f} s ({n / t_cut:6.1f} chips/s)  cut + write "
                    f"{t_write:6.2f} s ({n / t_write:6.1f} chips/s)")
            if s3 is not None:
                bucket, pid = s3
                before = cpu_seconds(pid)
                t_s3, n_s3 = write_once(stack, plan, StorageConfig(
                    root=f"{bucket}/run{r}", workspace=Path(ws) / f"s3-{r}"))
                server_s.append(cpu_seconds(pid) - before)
                if n_s3 != n:
                    raise SystemExit(f"{n_s3} of {n} chips written to S3")
                s3_s.append(t_s3)
                line += (f"  to S3 {t_s3:6.2f} s ({n / t_s3:6.1f} chips/s; the S3 server "
                         f"used {server_s[-1]:.1f} CPU s)")
            if args.scheduler == "threads":  # the store code path without a server
                t_mem, n_mem = write_once(stack, plan, StorageConfig(
                    root=f"memory://s2xr-e2e/run{r}", workspace=Path(ws) / f"mem-{r}"))
                if n_mem != n:
                    raise SystemExit(f"{n_mem} of {n} chips written to memory://")
                mem_s.append(t_mem)
                line += f"  to memory:// {t_mem:6.2f} s"
                import fsspec

                fsspec.filesystem("memory").rm(f"/s2xr-e2e/run{r}", recursive=True)
            print(line, flush=True)
    tc, tw = statistics.median(cut_s), statistics.median(write_s)
    ts = statistics.median(s3_s) if s3_s else None
    tm = statistics.median(mem_s) if mem_s else None
    print(json.dumps({"benchmark": "end_to_end", "quick": args.quick, "n": n,
                      "scheduler": label, "seconds_cut": tc, "seconds_cut_and_write": tw,
                      "chips_per_s_cut": n / tc, "chips_per_s_local": n / tw,
                      "write_overhead": tw / tc - 1,
                      "chips_per_s_s3": n / ts if ts else None,
                      "s3_vs_local": ts / tw if ts else None,
                      "s3_server_cpu_s": statistics.median(server_s) if server_s else None,
                      "chips_per_s_memory": n / tm if tm else None}))


if __name__ == "__main__":
    main()
