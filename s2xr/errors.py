"""Every exception s2xr raises on purpose. Messages name the field and what to do."""

from __future__ import annotations


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


class SceneError(S2xrError):
    """An item cannot be used: a missing band, a bad grid, a corrupt raster."""


class StorageError(S2xrError, OSError):
    """The dataset root cannot be written or is inconsistent."""


class ServerError(S2xrError):
    """An embedded server (STAC API, AIS replay) failed to start or stop."""


class PlanningError(S2xrError, ValueError):
    """Overpass planning input (TLE, acquisition plan, tiles) is malformed."""


class AisError(S2xrError):
    """AIS capture failed (rejected key, protocol error)."""
