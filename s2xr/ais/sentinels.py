"""ITU-R M.1371 "not available" values of the kinematic fields: one rule for every AIS source.

Fields as decoders give them (knots, degrees), the raw value in brackets:

- speed over ground: 102.3 kn [1023] = not available; 102.2 kn [1022] = "102.2 knots or
  higher", a valid (lower-bound) speed that is kept;
- course over ground: 360.0° [3600] = not available (3601–4095 are not used);
- true heading: 511 = not available (360–510 are not used).

Anything outside the valid range (negative, a course or heading ≥ 360°, a speed above
102.2 kn) becomes NaN the same way, so a garbage value is never mistaken for a measurement.
aisstream frames (live capture and JSON files, :mod:`s2xr.ais.frames`) and every table that
:func:`s2xr.ais.normalize_points` validates (CSV, Excel, Parquet, NMEA via pyais, SQLite) go
through these functions.
"""

from __future__ import annotations

import math

import numpy as np

SOG_NOT_AVAILABLE = 102.3
SOG_MAX = 102.2  # "102.2 knots or higher": valid
COG_NOT_AVAILABLE = 360.0
HEADING_NOT_AVAILABLE = 511
_SOG_LIMIT = 102.25  # between the two: decoders give 102.2 / 102.3 as binary floats


def sog_value(v: float) -> float:
    """A speed in knots, or NaN when not available or impossible."""
    return v if 0.0 <= v < _SOG_LIMIT else math.nan


def angle_value(v: float) -> float:
    """A course or heading in degrees (0 ≤ v < 360), else NaN (3600 → 360.0, 511)."""
    return v if 0.0 <= v < 360.0 else math.nan


def sog_values(v: np.ndarray) -> np.ndarray:
    """:func:`sog_value` over an array (a new float array)."""
    v = np.asarray(v, dtype=float)
    with np.errstate(invalid="ignore"):
        return np.where((v >= 0.0) & (v < _SOG_LIMIT), v, np.nan)


def angle_values(v: np.ndarray) -> np.ndarray:
    """:func:`angle_value` over an array (a new float array)."""
    v = np.asarray(v, dtype=float)
    with np.errstate(invalid="ignore"):
        return np.where((v >= 0.0) & (v < 360.0), v, np.nan)
