"""AIS: file sources, aisstream capture and replay, tracks and positions at sensing time.

The two calls the chip pipeline needs:

* ``read_ais_table(path | DataFrame) -> AisTable(points, rejects)`` (:mod:`s2xr.ais.files`);
* ``position_at(tracks, targets) -> DataFrame`` (:mod:`s2xr.ais.tracks`).

Capture (:mod:`s2xr.ais.capture`), the replay server (:mod:`s2xr.ais.replay`), storage
(:mod:`s2xr.ais.storage`), random sampling (:mod:`s2xr.ais.sampling`) and synthetic AIS
(:mod:`s2xr.ais.synthetic`) are imported from their modules (they pull in websockets).
"""

from s2xr.ais.aisstream import (
    CAPTURE_TYPES,
    WORLD,
    Box,
    boxes_for_tiles,
    build_subscription,
    parse_aisstream_time,
    validate_subscription,
)
from s2xr.ais.files import read_ais_table, read_aisstream_jsonl, read_nmea
from s2xr.ais.frames import FrameParser, parse_aisstream_message
from s2xr.ais.normalize import normalize_points
from s2xr.ais.schema import POINT_COLUMNS, AisTable
from s2xr.ais.tracks import build_tracks, join_static, position_at, static_table

__all__ = ["CAPTURE_TYPES", "POINT_COLUMNS", "WORLD", "AisTable", "Box", "FrameParser",
           "boxes_for_tiles", "build_subscription", "build_tracks", "join_static",
           "normalize_points", "parse_aisstream_message", "parse_aisstream_time",
           "position_at", "read_ais_table", "read_aisstream_jsonl", "read_nmea",
           "static_table", "validate_subscription"]
