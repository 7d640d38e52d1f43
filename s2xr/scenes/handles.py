"""Rasterio dataset handles for COG assets: opened once per thread (datasets are not
thread-safe), remote opens retried with back-off, and the first open of a remote asset in a
process made alone so that GDAL sends its HEAD and header read once, not once per thread.
Nothing here reads pixels."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import OrderedDict
from typing import Any

import rasterio

from s2xr.errors import AssetReadError
from s2xr.scenes.remote import GDAL_OPTIONS, _forget_url, _generation, is_remote

log = logging.getLogger(__name__)

MAX_OPEN_PER_THREAD = 64
READ_ATTEMPTS = 4
"""Reads of one block (s2xr's retries around GDAL's: also resets, stalls and bad bodies)."""
RETRY_BASE_S = 0.25

_local = threading.local()


def forget_handles() -> None:
    """Make every thread close its dataset handles on its next open (and forget which
    assets were opened): after files are replaced or GDAL options change."""
    _generation[0] += 1
    _OPENED.clear()


def backoff(attempt: int) -> float:
    """Seconds to wait before try ``attempt + 2``: exponential, with jitter."""
    return RETRY_BASE_S * 2**attempt * (0.5 + random.random())


def _open_with_retries(href: str) -> Any:
    """``rasterio.open(href)``; a remote href is tried up to :data:`READ_ATTEMPTS` times
    (GDAL forgets the URL's cached failure between tries)."""
    for attempt in range(READ_ATTEMPTS):
        try:
            return rasterio.open(href)
        except rasterio.errors.RasterioIOError as exc:
            if attempt == READ_ATTEMPTS - 1 or not is_remote(href):
                raise AssetReadError(href, f"cannot open {href}: {exc} (after {attempt + 1} "
                                     "tries)") from exc
            _forget_url(href)
            delay = backoff(attempt)
            log.info("cannot open %s: %s; retry in %.2f s", href, exc, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


_FIRST_OPENS: dict[str, threading.Lock] = {}
_OPENED: set[str] = set()
_FIRST_OPENS_LOCK = threading.Lock()


def _open_first(href: str) -> Any:
    """:func:`_open_with_retries`; a remote ``href`` one thread at a time until it has been
    opened once in this process: GDAL then knows the URL's size and header, so the threads
    that open it next send no request (opened at the same moment, each sends its own HEAD)."""
    if not is_remote(href) or href in _OPENED:
        return _open_with_retries(href)
    with _FIRST_OPENS_LOCK:
        lock = _FIRST_OPENS.setdefault(href, threading.Lock())
    with lock:
        ds = _open_with_retries(href)
        with _FIRST_OPENS_LOCK:
            if len(_OPENED) > 4096:
                _OPENED.clear()
            _OPENED.add(href)
            _FIRST_OPENS.pop(href, None)
        return ds


def open_dataset(href: str) -> Any:
    """A rasterio dataset for ``href``, opened once per thread (LRU of 64); a remote href
    is opened by one thread first (see :func:`_open_first`)."""
    cache: OrderedDict[str, Any] = getattr(_local, "datasets", None) or OrderedDict()
    if getattr(_local, "generation", 0) != _generation[0]:
        for ds in cache.values():
            ds.close()
        cache.clear()
        env = getattr(_local, "env", None)
        if env is not None:  # the GDAL options may have changed
            env.__exit__(None, None, None)
            _local.env = None
        _local.generation = _generation[0]
    _local.datasets = cache
    ds = cache.get(href)
    if ds is None:
        if getattr(_local, "env", None) is None:
            _local.env = rasterio.Env(**GDAL_OPTIONS)
            _local.env.__enter__()
        ds = _open_first(href)
        cache[href] = ds
        if len(cache) > MAX_OPEN_PER_THREAD:
            _, old = cache.popitem(last=False)
            old.close()
    else:
        cache.move_to_end(href)
    return ds


def forget_dataset(href: str) -> None:
    """Close this thread's handle of ``href`` and make GDAL forget what it cached of the URL
    (after a failed read: the next open starts afresh)."""
    cache = getattr(_local, "datasets", None)
    ds = cache.pop(href, None) if cache is not None else None
    if ds is not None:
        ds.close()
    _OPENED.discard(href)
    _forget_url(href)


def was_opened(href: str) -> bool:
    """Whether ``href`` has been opened in this process since handles were last forgotten."""
    return href in _OPENED
