"""s2xr.memory: the allocator settings the chip job applies, each with its effect."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

CHILD = r"""
import ctypes, json, sys
import numpy as np
from s2xr.memory import limit_malloc

class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena ordblks smblks hblks hblkhd usmblks "
                                                "fsmblks uordblks fordblks keepcost").split()]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
applied = limit_malloc(arenas=2, mmap_threshold=int(sys.argv[1]))
before = libc.mallinfo2().hblks
a = np.ones(600_000, np.uint8)  # 600 kB
mapped = libc.mallinfo2().hblks - before
import pyarrow as pa
pool = pa.default_memory_pool().backend_name
print(json.dumps({"applied": applied, "mapped": mapped, "pool": pool}))
"""

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")


def _run(threshold: int, **env: str) -> dict:
    clean = {k: v for k, v in os.environ.items()
             if k not in ("MALLOC_ARENA_MAX", "MALLOC_MMAP_THRESHOLD_",
                          "ARROW_DEFAULT_MEMORY_POOL")}
    out = subprocess.run([sys.executable, "-c", CHILD, str(threshold)], env={**clean, **env},
                         capture_output=True, text=True, check=True, timeout=120)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_mmap_threshold_decides_where_big_arrays_live() -> None:
    low = _run(256 * 1024)
    assert low["applied"] == {"arenas": 2, "mmap_threshold": 256 * 1024, "arrow_pool": "system"}
    assert low["pool"] == "system"
    assert low["mapped"] == 1  # the 600 kB array is its own mapping, unmapped when freed
    high = _run(8 * 2**20)
    assert high["mapped"] == 0  # below the threshold: from the heap


def test_user_environment_wins() -> None:
    out = _run(256 * 1024, MALLOC_ARENA_MAX="4", MALLOC_MMAP_THRESHOLD_="8388608",
               ARROW_DEFAULT_MEMORY_POOL="jemalloc")
    assert out["applied"] == {}
    assert out["mapped"] == 0
    assert out["pool"] in ("jemalloc", "mimalloc")
