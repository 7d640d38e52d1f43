"""Remote COG access shared by the reader's threads: the GDAL settings for /vsicurl/, the
per-request timeout, forgetting a URL GDAL cached as failed, and the record of assets whose
reads failed (for the chip job's ops DB reasons). Nothing here reads pixels."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import math
import threading
from typing import Any

from s2xr.errors import AssetReadError

GDAL_OPTIONS = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",  # no directory listing (a request) per open
    "GDAL_CACHEMAX": 32 * 2**20,
    # remote COGs (/vsicurl/): the header in one request at open; adjacent ranges merged;
    # GDAL's own retries of 429/502/503/504 with back-off; raw bytes kept process-wide so a
    # block evicted from BLOCKS is decoded again without a second request
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.TIF,.tiff,.TIFF",
    "GDAL_INGESTED_BYTES_AT_OPEN": 32768,
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    "GDAL_HTTP_MAX_RETRY": 3,
    "GDAL_HTTP_RETRY_DELAY": 0.5,
    "GDAL_HTTP_TIMEOUT": 30,
    "GDAL_HTTP_CONNECTTIMEOUT": 10,
    "CPL_VSIL_CURL_CACHE_SIZE": 256 * 2**20,
}
_generation = [0]
"""Bumped when every thread must reopen its dataset handles (new GDAL options, a reset)."""
_OPTIONS_LOCK = threading.Lock()
_FAILURES: dict[str, str] = {}
_FAILURES_LOCK = threading.Lock()


def record_read_failure(exc: BaseException) -> None:
    """Remember which asset a failed block read could not read (for :func:`take_read_failures`);
    errors that name no asset are ignored."""
    if isinstance(exc, AssetReadError):
        with _FAILURES_LOCK:
            _FAILURES[exc.href] = str(exc)[:300]


def take_read_failures() -> dict[str, str]:
    """``{href: error}`` of the assets whose blocks this process marked as read errors since
    the last call (then forgotten). A chip job maps them to its items and bands."""
    with _FAILURES_LOCK:
        out = dict(_FAILURES)
        _FAILURES.clear()
    return out



def use_read_timeout(seconds: float) -> None:
    """Give every range request of remote COGs ``seconds`` (whole seconds, at least 1) before
    GDAL abandons it (``GDAL_HTTP_TIMEOUT``; connecting at most 10 s of it) and the reader
    retries the block. Threads reopen their handles with the new setting; a no-op when it
    is already in force. Called by each loader block (``stac.read_timeout_s``), so it holds on
    a cluster's workers too."""
    value = max(1, math.ceil(seconds))
    with _OPTIONS_LOCK:
        if GDAL_OPTIONS["GDAL_HTTP_TIMEOUT"] == value:
            return
        GDAL_OPTIONS["GDAL_HTTP_TIMEOUT"] = value
        GDAL_OPTIONS["GDAL_HTTP_CONNECTTIMEOUT"] = min(10, value)
        _generation[0] += 1


def is_remote(href: str) -> bool:
    """Whether ``href`` is read over the network (each block a range request)."""
    return href.startswith(("http://", "https://", "s3://", "/vsicurl/", "/vsis3/"))


@functools.lru_cache(maxsize=1)
def _libgdal() -> Any:
    """The GDAL library rasterio loaded (for the one call rasterio does not expose)."""
    try:
        with open("/proc/self/maps") as maps:
            path = next((ln.split()[-1] for ln in maps if "libgdal" in ln), None)
        return ctypes.CDLL(path) if path else None
    except OSError:
        return None


def _forget_url(href: str) -> None:
    """Make GDAL forget what it cached about a remote ``href``: after a 503 or a reset at
    open it caches the failure, and every later open of that URL in this process fails
    without a request (so a retry would never reach the server)."""
    lib = _libgdal()
    if lib is not None and is_remote(href):
        path = href if href.startswith("/vsi") else "/vsicurl/" + href
        with contextlib.suppress(AttributeError):
            lib.VSICurlPartialClearCache(path.encode())
