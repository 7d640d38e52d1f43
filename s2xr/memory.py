"""Process memory: hand freed memory back to the OS and keep glibc from hoarding it.

A chip job allocates and frees many multi-megabyte arrays (decoded COG blocks, stack
blocks, chip batches, encode buffers) from several threads. With glibc's defaults each
thread's arena keeps its freed pages, and glibc's *dynamic* mmap threshold rises to the
largest block freed so far (up to 32 MB), after which such arrays come from the arena
heap and their pages stay resident after ``free``. Arrow's default pool (jemalloc) keeps
freed blocks too. On the AIS memory benchmark (``benchmarks/ais_memory.py``) these
settings lower the chip process's peak RSS from ~1,010–1,150 MB to ~930 MB.

Everything here is a no-op on a C library other than glibc; nothing computes.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
from typing import Any

_M_MMAP_THRESHOLD = -3  # glibc mallopt parameters
_M_ARENA_MAX = -8
MMAP_THRESHOLD = 256 * 1024
"""Allocations at least this large are mmapped and returned to the OS when freed."""


@functools.lru_cache(maxsize=1)
def _libc() -> Any:
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        return libc
    except (OSError, AttributeError):  # not glibc
        return None


def release_free_memory() -> None:
    """Hand freed memory back to the OS now: Arrow's pool releases unused blocks and glibc
    trims its heaps (``malloc_trim``). Call between stages that free large data."""
    with contextlib.suppress(ImportError):
        import pyarrow as pa

        pa.default_memory_pool().release_unused()
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


WRITE_MMAP_THRESHOLD = 4 * 2**20
"""The mmap threshold while chips are written (:mod:`s2xr.store.writer`): above a chip's
arrays (≈ 1.5 MB), so their buffers are reused from the heap instead of mmapped and zeroed
each time (measured: 15.2 → 12.7 s for 1,000 chips written; docs/benchmarks.md)."""


def limit_malloc(arenas: int = 2, mmap_threshold: int = MMAP_THRESHOLD) -> dict[str, Any]:
    """From now on: at most ``arenas`` glibc malloc arenas (``M_ARENA_MAX``), allocations of
    ``mmap_threshold`` bytes or more mmapped (``M_MMAP_THRESHOLD``, which also stops glibc
    raising the threshold itself) and Arrow allocating from the system allocator.

    Each setting is skipped when the user set its environment variable
    (``MALLOC_ARENA_MAX``, ``MALLOC_MMAP_THRESHOLD_``, ``ARROW_DEFAULT_MEMORY_POOL``).
    Returns what was applied, e.g. ``{"arenas": 2, "mmap_threshold": 262144, "arrow_pool":
    "system"}`` (empty off glibc with pyarrow absent)."""
    applied: dict[str, Any] = {}
    libc = _libc()
    if libc is not None:
        if not os.environ.get("MALLOC_ARENA_MAX") and libc.mallopt(_M_ARENA_MAX, arenas) == 1:
            applied["arenas"] = arenas
        if (not os.environ.get("MALLOC_MMAP_THRESHOLD_")
                and libc.mallopt(_M_MMAP_THRESHOLD, mmap_threshold) == 1):
            applied["mmap_threshold"] = mmap_threshold
    if not os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        with contextlib.suppress(ImportError):
            import pyarrow as pa

            pa.set_memory_pool(pa.system_memory_pool())
            applied["arrow_pool"] = pa.default_memory_pool().backend_name
    return applied
