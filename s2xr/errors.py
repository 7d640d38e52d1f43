"""Every exception s2xr raises on purpose. Messages name the field and what to do."""

from __future__ import annotations

import errno


class S2xrError(Exception):
    """Base class for s2xr errors."""


class ConfigError(S2xrError, ValueError):
    """A configuration key is unknown or has a bad value."""


class InputError(S2xrError, ValueError):
    """An input file or record is malformed (the message names the field)."""


class TileError(InputError):
    """An MGRS / Sentinel-2 tile ID is not valid."""


class StacError(S2xrError):
    """The STAC API or catalog could not be searched (down, errors, bad answers)."""


class StacUnavailableError(StacError):
    """The STAC API itself cannot be opened (down, refusing, not a STAC API): every search
    would fail, unlike one search that fails after its retries."""


class SceneError(S2xrError):
    """An item cannot be used: a missing band, a bad grid, a corrupt raster."""


class AssetReadError(SceneError):
    """One asset (``href``) could not be opened or read, retries included."""

    def __init__(self, href: str, message: str) -> None:
        super().__init__(message)
        self.href = href


class StorageError(S2xrError, OSError):
    """The dataset root cannot be written or is inconsistent."""


class ServerError(S2xrError):
    """An embedded server (STAC API, AIS replay) failed to start or stop."""


class PlanningError(S2xrError, ValueError):
    """Overpass planning input (TLE, acquisition plan, tiles) is malformed."""


class AisError(S2xrError):
    """AIS capture failed (rejected key, protocol error)."""


_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
_NO_PERMISSION = (errno.EPERM, errno.EACCES, errno.EROFS)
_DISK_FULL_TEXT = ("no space left", "disk is full", "free disk space", "disk quota")
_NO_PERMISSION_TEXT = ("permission denied", "read-only file system", "operation not permitted")


def _chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in out and len(out) < 20:
        out.append(cur)
        cur = cur.__cause__ or cur.__context__
    return out


def explain_io_error(exc: BaseException) -> str | None:
    """A one-line explanation of a storage failure (disk full, permission denied) found
    anywhere in ``exc``'s cause chain — ``OSError`` errno, GDAL/rasterio and SQLite texts —
    or None when ``exc`` is not one."""
    chain = _chain(exc)
    # only real OSErrors carry an errno: GDAL/rasterio errors reuse the attribute for CPL
    # error classes (CPLE_AppDefined == 1 would read as EPERM)
    errnos = {e.errno for e in chain if isinstance(e, OSError)
              and not type(e).__module__.startswith("rasterio")}
    texts = " | ".join(str(e) for e in chain).lower()
    where = next((getattr(e, "filename", None) for e in chain
                  if getattr(e, "filename", None)), None)
    at = f" at {where}" if where else ""
    if errnos & set(_DISK_FULL) or any(t in texts for t in _DISK_FULL_TEXT):
        return (f"disk full{at}: free space (or point storage.root elsewhere) and re-run; "
                "the run's unfinished jobs are kept for `s2xr ops retry`")
    if errnos & set(_NO_PERMISSION) or any(t in texts for t in _NO_PERMISSION_TEXT):
        return (f"permission denied{at}: make the dataset root writable for this user (or "
                "choose another storage.root) and re-run; the run's unfinished jobs are kept "
                "for `s2xr ops retry`")
    if "write failed" in texts:  # GDAL reports ENOSPC as a bare "Write failed."
        return (f"a raster write failed{at} (usually a full disk): check free space under "
                "storage.root and re-run; the run's unfinished jobs are kept for `s2xr ops "
                "retry`")
    return None
