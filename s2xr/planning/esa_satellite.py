"""Which Sentinel-2 satellite a plan row belongs to when the plan does not say.

The predecessor's ESA plan CSV has ``tile_id, start_time_utc, end_time_utc`` and, at most, a
``satellite`` column it filled with a generic ``S2``. :func:`infer_satellites` tells S2A, S2B
and S2C apart by their orbits: a row belongs to the one satellite whose pass over the row's
tile (SGP4 from the TLEs) is abeam the tile centre inside the row's window. Rows it cannot
place (no pass in the window, or more than one satellite) stay unknown, and
:func:`~s2xr.planning.esa.parse_plan_csv` asks for the satellite instead of guessing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import pandas as pd

from s2xr.planning.tle import CYCLE_DAYS, TleSet, predict_tle_passes, read_tle, select_tles

log = logging.getLogger(__name__)

SLACK = pd.Timedelta(minutes=10)  # a window may be a little off the pass it stands for
# an element set further than this from a row's date is not used to tell its satellite: the
# satellites change orbital slots now and then (S2C took S2A's in 2025), and an old plan
# placed with today's orbits would name the wrong one
MAX_TLE_AGE = pd.Timedelta(days=180)
TIE_S = 60.0  # passes this close to a window's middle (s) do not tell a satellite apart


def infer_satellites(rows: pd.DataFrame, tles: Sequence[TleSet] | None = None, *,
                     slack: pd.Timedelta = SLACK,
                     max_age: pd.Timedelta = MAX_TLE_AGE) -> pd.Series:
    """Per row of ``rows`` (DataFrame[tile_id, start_time_utc, end_time_utc], UTC times), the
    satellite ("S2A", "S2B", "S2C") whose daylit pass over the tile has its centre time in
    [start − ``slack``, end + ``slack``], nearest the window's middle when several have; None
    when none has, or two are within a minute of each other.

    Per satellite the element set nearest the row's day is used (``tles``; default: the
    bundled ones), if its epoch is within ``max_age`` of that day; passes are predicted a
    whole number of 10-day repeat cycles nearer its epoch and shifted back (the ground track
    repeats every cycle). A row with no usable element set stays None.
    """
    out = pd.Series(None, index=rows.index, dtype=object)
    if rows.empty:
        return out
    sets = list(tles) if tles is not None else read_tle(None)
    cycle = pd.Timedelta(days=CYCLE_DAYS)
    days = rows["start_time_utc"].dt.floor("D")
    for (tile, day), grp in rows.groupby([rows["tile_id"], days], sort=False):
        # a whole day around the rows: a pass is found as a minimum of the distance along a
        # coarse track, which a span of a few minutes would cut off
        a = min(day, grp["start_time_utc"].min() - slack) - pd.Timedelta(hours=2)
        b = max(day + pd.Timedelta(days=1), grp["end_time_utc"].max() + slack) + \
            pd.Timedelta(hours=2)
        centres: dict[str, pd.Series] = {}
        for sat, tle in select_tles(sets, day).items():
            if abs(tle.epoch - day) > max_age:
                continue
            shift = cycle * round((tle.epoch - day) / cycle)
            passes = predict_tle_passes([str(tile)], a + shift, b + shift, {sat: tle})
            centres[sat] = passes["centre_time_utc"] - shift
        for idx, r in grp.iterrows():
            lo, hi = r["start_time_utc"] - slack, r["end_time_utc"] + slack
            mid = lo + (hi - lo) / 2
            off = sorted((float(abs(c[(c >= lo) & (c <= hi)] - mid).min().total_seconds()), s)
                         for s, c in centres.items() if ((c >= lo) & (c <= hi)).any())
            # two satellites can pass a tile minutes apart (neighbouring orbits): the pass
            # the window is centred on is the row's, unless another is about as near
            if off and (len(off) == 1 or off[1][0] - off[0][0] > TIE_S):
                out[idx] = off[0][1]
    log.info("satellite of %d of %d plan row(s) told from the TLE passes",
             int(out.notna().sum()), len(rows))
    return out
