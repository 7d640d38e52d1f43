"""Overpass planning: when Sentinel-2A/2B/2C image which MGRS tiles.

=====================  ===========================================================
``predict_overpasses``  the schedule of tiles over a horizon, mode tle / esa_plan /
                        backfill / auto (``schedule``)
``write_schedule``      ``plan/overpass_schedule.csv`` + versioned copy, atomically
``active_windows``      the windows open at a given time (for the AIS collector)
``plot_schedule``       timeline PNG of the windows
``read_tle``            validated Sentinel-2 element sets (bundled, file or URL)
``predict_tle_passes``  swath-coverage passes from the TLEs (``tle``)
``read_esa_plan``       ESA acquisition-plan KML / CSV → :class:`EsaPlan` (``esa``)
``esa_windows``         per-tile windows from a plan (``esa_tiles``)
``backfill_passes``     daily windows at the tile's real pass time (``backfill``)
=====================  ===========================================================

See ``docs/planning.md``.
"""

from s2xr.planning.backfill import backfill_passes, nominal_pass_time_of_day
from s2xr.planning.earth import sun_elevation_deg
from s2xr.planning.esa import EsaPlan, load_esa_plans, read_esa_plan
from s2xr.planning.esa_tiles import esa_windows
from s2xr.planning.schedule import (
    MODES,
    SCHEDULE_COLUMNS,
    active_windows,
    format_schedule,
    parse_tiles,
    plot_schedule,
    predict_overpasses,
    write_schedule,
    write_schedule_file,
)
from s2xr.planning.tle import (
    TleSet,
    bundled_tle_paths,
    predict_tle_passes,
    read_tle,
    select_tles,
)

__all__ = [
    "MODES",
    "SCHEDULE_COLUMNS",
    "EsaPlan",
    "TleSet",
    "active_windows",
    "backfill_passes",
    "bundled_tle_paths",
    "esa_windows",
    "format_schedule",
    "load_esa_plans",
    "nominal_pass_time_of_day",
    "parse_tiles",
    "plot_schedule",
    "predict_overpasses",
    "predict_tle_passes",
    "read_esa_plan",
    "read_tle",
    "select_tles",
    "sun_elevation_deg",
    "write_schedule",
    "write_schedule_file",
]
