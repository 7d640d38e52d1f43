"""MMSI validation (ITU-R M.585): one rule for every AIS source.

An MMSI is exactly 9 decimal digits. Accepted inputs:

* integers (any integer dtype, or Python ``int``) from 0 to 999 999 999 — read as the
  9 digits with leading zeros (a number cannot carry them: 2320001 is ``002320001``);
* integral floats from a numeric column (pandas turns an integer column with a gap into
  float64): ``235000001.0`` is ``235000001``;
* text made only of 9 ASCII digits: no sign, no whitespace padding, no exponent, no
  decimal point (``"2.35e8"``, ``" 235000001 "``, ``"235000001.0"`` are rejected).

The 9 digits must then have one of M.585's structures, with a MID (maritime identification
digits, the country) from 201 to 775:

=============  =================================================
``MIDxxxxxx``  ship station (first digit 2–7)
``0MIDxxxxx``  group of ship stations
``00MIDxxxx``  coast station
``111MIDxxx``  SAR aircraft
``8MIDxxxxx``  handheld VHF with DSC and GNSS
``98MIDxxxx``  craft associated with a parent ship
``99MIDxxxx``  aid to navigation (AtoN)
``970xxxxxx``  AIS-SART; ``972xxxxxx`` MOB device; ``974xxxxxx`` EPIRB-AIS
=============  =================================================

:func:`check_mmsi` does this for a whole column (vectorised: 10⁶ values in well under a
second) and gives a reason per bad value; :func:`parse_mmsi` for one value (aisstream frames).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Integral

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

MID_MIN, MID_MAX = 201, 775
MMSI_MAX = 999_999_999
NINE_DIGITS = "^[0-9]{9}$"


@dataclass(frozen=True)
class MmsiCheck:
    """Per value: ``mmsi`` (Int64; <NA> where invalid or missing) and ``reason`` (object:
    None where valid, else the reject reason naming the field and the raw value)."""

    mmsi: pd.Series
    reason: np.ndarray

    @property
    def ok(self) -> np.ndarray:
        return self.mmsi.notna().to_numpy()


def structure_problem(digits: str) -> str | None:
    """Why 9 digits are not an M.585 identity, or None when they are one."""
    d = digits
    if d[0] in "234567":
        mid, kind = d[0:3], "ship station MIDxxxxxx"
    elif d[:2] == "00":
        mid, kind = d[2:5], "coast station 00MIDxxxx"
    elif d[0] == "0":
        mid, kind = d[1:4], "group 0MIDxxxxx"
    elif d[0] == "1":
        if d[:3] != "111":
            return "an identity starting with 1 must be 111MIDxxx, a SAR aircraft"
        mid, kind = d[3:6], "SAR aircraft 111MIDxxx"
    elif d[0] == "8":
        mid, kind = d[1:4], "handheld 8MIDxxxxx"
    elif d[:3] in ("970", "972", "974"):
        return None
    elif d[:2] in ("98", "99"):
        mid, kind = d[2:5], ("craft associated with a ship 98MIDxxxx" if d[1] == "8"
                             else "aid to navigation 99MIDxxxx")
    else:
        return "an identity starting with 9 must be 98MIDxxxx, 99MIDxxxx, 970…, 972… or 974…"
    if not MID_MIN <= int(mid) <= MID_MAX:
        return f"{kind} with MID {mid}, not {MID_MIN}–{MID_MAX}"
    return None


def structure_ok(n: np.ndarray) -> np.ndarray:
    """Vectorised :func:`structure_problem` is None, for integers 0…999 999 999."""
    n = np.asarray(n, dtype=np.int64)

    def mid_ok(m: np.ndarray) -> np.ndarray:
        return (m >= MID_MIN) & (m <= MID_MAX)

    first = n // 100_000_000
    ok = (first >= 2) & (first <= 7) & mid_ok(n // 1_000_000)  # MIDxxxxxx
    coast = n < 10_000_000  # 00MIDxxxx
    ok |= coast & mid_ok(n // 10_000)
    ok |= (first == 0) & ~coast & mid_ok(n // 100_000)  # 0MIDxxxxx
    ok |= (n // 1_000_000 == 111) & mid_ok(n // 1_000 % 1000)  # 111MIDxxx
    ok |= (first == 8) & mid_ok(n // 100_000 % 1000)  # 8MIDxxxxx
    two = n // 10_000_000
    ok |= ((two == 98) | (two == 99)) & mid_ok(n // 10_000 % 1000)  # 98MID / 99MID
    three = n // 1_000_000
    ok |= (three == 970) | (three == 972) | (three == 974)
    return ok


def _text_of(v: object) -> str:
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e15:
        return repr(v)
    return str(v)


def _scalar(v: object) -> tuple[int | None, str | None]:
    """One raw value → (9-digit number, None) or (None, problem without the field name)."""
    if v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and math.isnan(v)):
        return None, "missing"
    if isinstance(v, bool | np.bool_):
        return None, f"{v!r} is not 9 digits"
    if isinstance(v, Integral):
        n = int(v)
        if not 0 <= n <= MMSI_MAX:
            return None, f"{str(n)!r} is not 9 digits"
        digits = f"{n:09d}"
    elif isinstance(v, float | np.floating):
        f = float(v)
        if not (math.isfinite(f) and f.is_integer() and 0 <= f <= MMSI_MAX):
            return None, f"{_text_of(f)!r} is not 9 digits"
        digits = f"{int(f):09d}"
    elif isinstance(v, str):
        if v == "":
            return None, "missing"
        if not (len(v) == 9 and v.isascii() and v.isdigit()):
            return None, f"{v!r} is not 9 digits"
        digits = v
    else:
        return None, f"{str(v)!r} is not 9 digits"
    why = structure_problem(digits)
    if why:
        return None, f"{digits!r} is not a valid MMSI (ITU-R M.585: {why})"
    return int(digits), None


def parse_mmsi(value: object) -> int | None:
    """One raw MMSI (int, float from a numeric column, or text) → the number, or None."""
    return _scalar(value)[0]


def mmsi_problem(value: object) -> str | None:
    """Why one raw MMSI is rejected ("mmsi: '2.35e8' is not 9 digits"), or None."""
    why = _scalar(value)[1]
    return f"mmsi: {why}" if why else None


def _reasons_for(raw: np.ndarray, bad: np.ndarray) -> np.ndarray:
    """Reasons for the bad positions (one scalar check per distinct bad value)."""
    out = np.full(raw.size, None, dtype=object)
    idx = np.flatnonzero(bad)
    if not idx.size:
        return out
    cache: dict[object, str] = {}
    for i in idx:
        v = raw[i]
        try:
            key: object = (type(v), v)
            hash(key)
        except TypeError:
            key = (type(v), repr(v))
        if key not in cache:
            cache[key] = mmsi_problem(v) or "mmsi: not a valid MMSI"
        out[i] = cache[key]
    return out


def check_mmsi(values: pd.Series) -> MmsiCheck:
    """Validate a column of raw MMSIs (see the module doc) → :class:`MmsiCheck`."""
    n_rows = len(values)
    dtype = values.dtype
    if pd.api.types.is_bool_dtype(dtype):
        raw = values.to_numpy(dtype=object)
        return MmsiCheck(pd.Series(pd.array([pd.NA] * n_rows, dtype="Int64"),
                                   index=values.index), _reasons_for(raw, np.ones(n_rows, bool)))
    if pd.api.types.is_integer_dtype(dtype) or pd.api.types.is_float_dtype(dtype):
        present = values.notna().to_numpy()
        if pd.api.types.is_integer_dtype(dtype):
            filled = values.fillna(0) if not present.all() else values
            arr = filled.to_numpy()
            inrange = present & (arr >= 0) & (arr <= MMSI_MAX)
        else:
            arr = values.to_numpy(dtype=float, na_value=np.nan)
            with np.errstate(invalid="ignore"):
                inrange = (present & np.isfinite(arr) & (arr >= 0) & (arr <= MMSI_MAX)
                           & (np.floor(arr) == arr))
        n = np.where(inrange, arr, 0).astype(np.int64)
        ok = inrange & structure_ok(n)
        raw = values.to_numpy(dtype=object) if not ok.all() else None
    else:
        kind = pd.api.types.infer_dtype(values, skipna=True)
        if kind not in ("string", "empty"):  # mixed cells (Excel): one check per value
            raw = values.to_numpy(dtype=object)
            parsed = [_scalar(v)[0] for v in raw]
            ok = np.array([p is not None for p in parsed], dtype=bool)
            n = np.array([p or 0 for p in parsed], dtype=np.int64)
        else:
            arr = pa.array(values.to_numpy(dtype=object), type=pa.string(), from_pandas=True)
            digits = pc.fill_null(pc.match_substring_regex(arr, NINE_DIGITS), False)
            digits = digits.to_numpy(zero_copy_only=False)
            text = pc.if_else(pa.array(digits), arr, pa.scalar("0"))
            n = pc.cast(text, pa.int64()).to_numpy(zero_copy_only=False)
            ok = digits & structure_ok(n)
            raw = values.to_numpy(dtype=object) if not ok.all() else None
    mmsi = pd.array(np.where(ok, n, 0), dtype="Int64")
    mmsi[~ok] = pd.NA
    reasons = (_reasons_for(raw, ~ok) if raw is not None
               else np.full(n_rows, None, dtype=object))
    return MmsiCheck(pd.Series(mmsi, index=values.index), reasons)
