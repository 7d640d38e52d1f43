"""The AIS point schema: columns, their dtypes and aliases, and :class:`AisTable`.

Points: DataFrame[mmsi int64, time datetime64[ns, UTC] (NaT if unknown), lat, lon
(float64), sog (kn), cog, heading (deg; NaN if unknown, heading 511 → NaN), ship_type
(Int64; DMA names such as "Cargo" mapped to codes), length, beam, to_bow, to_stern, to_port,
to_starboard (m, float64), ship_name (string, stripped), overpass_time (datetime64[ns, UTC]
or NaT), source (string; the file name), provider (string: 'file', 'aisstream', 'nmea',
'synthetic', ...), optional tile_id, call_sign, message_type (string), imo (Int64),
nav_status (Int64, or string when the file names the statuses) when the input has them],
WGS84 degrees, indexed by the row number in the input, sorted by (mmsi, time).
:meth:`AisTable.to_geodataframe` adds Point geometries (EPSG:4326) on request: 10⁶ shapely
points take ~200 MB, and nothing in the chip pipeline needs them.

Rejects: DataFrame[row int64 (0 = the first data row of the input), mmsi Int64 (<NA> when the
MMSI itself is the problem), field, value (the raw input as text), reason].

Row validation (bad rows are recorded and skipped, never fatal) is in
:mod:`s2xr.ais.normalize`, time parsing in :mod:`s2xr.ais.fixtime`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    import geopandas as gpd

POINT_COLUMNS = ["mmsi", "time", "lat", "lon", "sog", "cog", "heading", "ship_type", "length",
                 "beam", "to_bow", "to_stern", "to_port", "to_starboard", "ship_name",
                 "overpass_time", "source", "provider"]
OPTIONAL_COLUMNS = ["tile_id", "call_sign", "imo", "nav_status", "message_type"]
REJECT_COLUMNS = ["row", "mmsi", "field", "value", "reason"]
FLOAT_COLUMNS = ("lat", "lon", "sog", "cog", "heading", "length", "beam", "to_bow", "to_stern",
                 "to_port", "to_starboard")
TEXT = pd.StringDtype("pyarrow")  # str(TEXT) == "string"; no Python object per value
CHUNK_ROWS = 100_000  # rows validated at a time
UTC_NS = "datetime64[ns, UTC]"

# lower-cased, '#', '_' and spaces removed → canonical name
ALIASES = {
    "mmsi": "mmsi", "userid": "mmsi",
    "lat": "lat", "latitude": "lat",
    "lon": "lon", "lng": "lon", "long": "lon", "longitude": "lon",
    "time": "time", "timestamp": "time", "basedatetime": "time", "datetime": "time",
    "timeutc": "time", "datetimeutc": "time",
    "sog": "sog", "speed": "sog", "speedoverground": "sog",
    "cog": "cog", "course": "cog", "courseoverground": "cog",
    "heading": "heading", "trueheading": "heading",
    "shiptype": "ship_type", "vesseltype": "ship_type", "type": "ship_type",
    "length": "length", "beam": "beam", "width": "beam",
    "shipname": "ship_name", "name": "ship_name", "vesselname": "ship_name",
    "overpasstime": "overpass_time",
    "capturedtime": "time",  # the predecessor's AIS snapshots and ops DB
    "tobow": "to_bow", "tostern": "to_stern", "toport": "to_port",
    "tostarboard": "to_starboard", "dimensiona": "to_bow", "dimensionb": "to_stern",
    "dimensionc": "to_port", "dimensiond": "to_starboard",
    # aisdb's CSV (Spire / exactEarth layout): Dimension_to_Bow, …, Message_ID
    "dimensiontobow": "to_bow", "dimensiontostern": "to_stern", "dimensiontoport": "to_port",
    "dimensiontostarboard": "to_starboard", "messageid": "message_type",
    "provider": "provider", "source": "source",
    "tileid": "tile_id", "callsign": "call_sign", "imo": "imo", "imonumber": "imo",
    "navigationalstatus": "nav_status", "navstatus": "nav_status",
    "messagetype": "message_type",
}

# ship type names (Danish Maritime Authority CSV) → AIS ship type code (ITU-R M.1371)
SHIP_TYPE_NAMES = {
    "wig": 20, "fishing": 30, "towing": 31, "towing long/wide": 32, "dredging": 33,
    "diving": 34, "military": 35, "sailing": 36, "pleasure": 37, "hsc": 40, "pilot": 50,
    "sar": 51, "tug": 52, "port tender": 53, "anti-pollution": 54, "law enforcement": 55,
    "medical": 58, "not party to conflict": 59, "passenger": 60, "cargo": 70, "tanker": 80,
    "other": 90,
}


@dataclass(frozen=True)
class AisTable:
    """Valid points and the rows that were rejected (with field and reason)."""

    points: pd.DataFrame
    rejects: pd.DataFrame

    def __len__(self) -> int:
        return len(self.points)

    def to_geodataframe(self) -> gpd.GeoDataFrame:
        """The points with Point geometries (EPSG:4326), built now (~200 B per point)."""
        import geopandas as gpd

        p = self.points
        return gpd.GeoDataFrame(p, geometry=gpd.points_from_xy(p["lon"], p["lat"]),
                                crs="EPSG:4326")


def _key(col: object) -> str:
    return str(col).lower().replace("#", "").replace("_", "").replace(" ", "")


def canonical_names(columns: Sequence[object]) -> dict[object, str]:
    """{input column: canonical name} for the recognised aliases, one column per name.

    When several columns mean the same (``time`` and ``timestamp``/``captured_time``), the
    column already named the canonical name (case, ``_``, ``#`` and spaces ignored) wins,
    else the first alias from the left; the others are left out (not read), so no table ever
    has two ``time`` columns."""
    mapping: dict[object, str] = {}
    taken: set[str] = set()
    exact = [col for col in columns if ALIASES.get(_key(col)) == _canonical_key(_key(col))]
    for col in [*exact, *(c for c in columns if c not in exact)]:
        name = ALIASES.get(_key(col))
        if name and name not in taken:
            mapping[col] = name
            taken.add(name)
    return {col: mapping[col] for col in columns if col in mapping}  # input order


def _canonical_key(key: str) -> str | None:
    """The canonical name whose own key is ``key`` (``overpasstime`` → ``overpass_time``)."""
    return _CANONICAL_KEYS.get(key)


_CANONICAL_KEYS = {_key(name): name for name in set(ALIASES.values())}


def ignored_aliases(columns: Sequence[object]) -> dict[object, object]:
    """{column left out: the column read instead} for columns that mean the same as another
    (see :func:`canonical_names`), e.g. ``{"captured_time": "time"}``."""
    used = canonical_names(columns)
    winner = {name: col for col, name in used.items()}
    return {col: winner[ALIASES[_key(col)]] for col in columns
            if col not in used and ALIASES.get(_key(col)) in winner}


def canonical_columns(df: pd.DataFrame) -> pd.DataFrame:
    """Rename recognised column aliases to the canonical names (see :func:`canonical_names`);
    the alias columns that lost to another column of the same meaning are dropped."""
    names = canonical_names(list(df.columns))
    return df.drop(columns=list(ignored_aliases(list(df.columns)))).rename(columns=names)

