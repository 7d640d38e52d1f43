"""AIS: file sources, aisstream messages, tracks and positions at sensing time.

``read_ais_table(path) -> AisTable(points, rejects)`` and
``position_at(tracks, targets) -> DataFrame`` are the two calls the chip pipeline needs.
"""

from s2xr.ais.files import (
    join_static,
    parse_aisstream_message,
    parse_aisstream_time,
    read_ais_table,
    read_aisstream_jsonl,
    read_nmea,
    static_table,
)
from s2xr.ais.schema import POINT_COLUMNS, AisTable, normalize_points
from s2xr.ais.tracks import position_at

__all__ = ["POINT_COLUMNS", "AisTable", "join_static", "normalize_points",
           "parse_aisstream_message", "parse_aisstream_time", "position_at", "read_ais_table",
           "read_aisstream_jsonl", "read_nmea", "static_table"]
