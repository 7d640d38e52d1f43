"""The AIS point schema and row validation (bad rows are recorded and skipped, never fatal).

Points: GeoDataFrame[mmsi int64, time datetime64[ns, UTC] (NaT if unknown), lat, lon
(float64), sog (kn), cog, heading (deg; NaN if unknown, heading 511 → NaN), ship_type
(Int64; DMA names such as "Cargo" mapped to codes), length, beam, to_bow, to_stern, to_port,
to_starboard (m, float64), ship_name (string, stripped), overpass_time (datetime64[ns, UTC]
or NaT), source (file name), provider ('file', 'aisstream', 'nmea', 'synthetic', ...),
optional tile_id, call_sign, imo, nav_status, message_type when the input has them,
geometry (Points)] in EPSG:4326. Rejects: DataFrame[row, mmsi, field, value, reason].
"""

from __future__ import annotations

from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd

from s2xr.errors import InputError

POINT_COLUMNS = ["mmsi", "time", "lat", "lon", "sog", "cog", "heading", "ship_type", "length",
                 "beam", "to_bow", "to_stern", "to_port", "to_starboard", "ship_name",
                 "overpass_time", "source", "provider"]
OPTIONAL_COLUMNS = ["tile_id", "call_sign", "imo", "nav_status", "message_type"]
REJECT_COLUMNS = ["row", "mmsi", "field", "value", "reason"]
FLOAT_COLUMNS = ("lat", "lon", "sog", "cog", "heading", "length", "beam", "to_bow", "to_stern",
                 "to_port", "to_starboard")

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

    points: gpd.GeoDataFrame
    rejects: pd.DataFrame

    def __len__(self) -> int:
        return len(self.points)


def canonical_columns(df: pd.DataFrame) -> pd.DataFrame:
    """Rename recognised column aliases to the canonical names (first match wins)."""
    mapping: dict[str, str] = {}
    taken: set[str] = set()
    for col in df.columns:
        key = str(col).lower().replace("#", "").replace("_", "").replace(" ", "")
        name = ALIASES.get(key)
        if name and name not in taken:
            mapping[col] = name
            taken.add(name)
    return df.rename(columns=mapping)


def _parse_times(values: pd.Series, dayfirst: bool) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(values):
        t = pd.to_datetime(values, utc=True)
    elif pd.api.types.is_numeric_dtype(values):  # unix seconds
        t = pd.to_datetime(values, unit="s", utc=True, errors="coerce")
    else:
        s = values.astype("string").str.strip().str.replace(r" \+0000 UTC$", "Z", regex=True)
        t = pd.to_datetime(s, utc=True, errors="coerce", format="ISO8601")
        retry = t.isna() & s.notna() & (s != "")
        if retry.any():
            t.loc[retry] = pd.to_datetime(s[retry], utc=True, errors="coerce",
                                          dayfirst=dayfirst, format="mixed")
    return t.astype("datetime64[ns, UTC]")


def _ship_type_codes(values: pd.Series) -> pd.Series:
    """Numeric AIS ship types, or DMA names ("Cargo", "Tanker", ...) mapped to their code;
    0 (not available) and anything else → <NA>."""
    num = pd.to_numeric(values, errors="coerce")
    names = values.astype("string").str.strip().str.lower().map(SHIP_TYPE_NAMES)
    out = num.fillna(pd.to_numeric(names, errors="coerce"))
    out = out.where((out > 0) & (out < 100) & (out % 1 == 0))
    return out.astype("Int64")


def normalize_points(raw: pd.DataFrame, *, source: str, provider: str = "file",
                     dayfirst: bool = False, now: pd.Timestamp | None = None) -> AisTable:
    """Canonicalise columns, coerce types and validate every row.

    Raises ``InputError`` only when a required column (mmsi, lat, lon) is missing; each bad
    row goes to ``rejects`` with the field and reason: MMSI not 9 digits, lat/lon missing,
    out of range or 0/0, unparseable or future time, duplicate fix.
    """
    df = canonical_columns(raw.copy())
    missing = [c for c in ("mmsi", "lat", "lon") if c not in df]
    if missing:
        raise InputError(f"AIS table {source}: required column(s) {missing} not found (have "
                         f"{list(raw.columns)[:12]}); name them mmsi, lat, lon (or MMSI, "
                         "LAT, LON / Latitude, Longitude)")
    df = df.reset_index(drop=True)
    n = len(df)
    rejects: list[pd.DataFrame] = []
    bad = np.zeros(n, bool)

    def reject(mask: np.ndarray, field: str, reason: str) -> None:
        mask = mask & ~bad
        if mask.any():
            idx = np.flatnonzero(mask)
            rejects.append(pd.DataFrame({"row": idx, "mmsi": df["mmsi"].iloc[idx].to_numpy(),
                                         "field": field,
                                         "value": df[field].iloc[idx].astype(str).to_numpy()
                                         if field in df else None, "reason": reason}))
            bad[idx] = True

    mmsi = pd.to_numeric(df["mmsi"], errors="coerce")
    reject(~((mmsi >= 100_000_000) & (mmsi <= 999_999_999) & (mmsi % 1 == 0)).to_numpy(),
           "mmsi", "mmsi: not a 9-digit number")
    for c in FLOAT_COLUMNS:
        if c in df:
            df[c] = pd.to_numeric(df[c], errors="coerce").astype(float)
        else:
            df[c] = np.nan
    lat, lon = df["lat"].to_numpy(), df["lon"].to_numpy()
    reject(~np.isfinite(lat), "lat", "lat: missing or not a number")
    reject(~np.isfinite(lon), "lon", "lon: missing or not a number")
    reject(np.abs(lat) > 90, "lat", "lat: outside −90…90")
    reject(np.abs(lon) > 180, "lon", "lon: outside −180…180")
    reject((lat == 0) & (lon == 0), "lat", "lat/lon: 0/0 is not a position")
    if "time" in df:
        t = _parse_times(df["time"], dayfirst)
        given = df["time"].notna() & (df["time"].astype(str).str.strip() != "")
        reject((t.isna() & given).to_numpy(), "time", "time: cannot parse")
        limit = (now or pd.Timestamp.now(tz="UTC")) + pd.Timedelta(days=1)
        reject((t > limit).fillna(False).to_numpy(), "time", "time: in the future")
        df["time"] = t
    else:
        df["time"] = pd.Series(pd.NaT, index=df.index, dtype="datetime64[ns, UTC]")
    if "overpass_time" in df:
        df["overpass_time"] = _parse_times(df["overpass_time"], dayfirst)
    else:
        df["overpass_time"] = pd.Series(pd.NaT, index=df.index, dtype="datetime64[ns, UTC]")
    df["mmsi"] = mmsi
    keep = df.loc[~bad].copy()
    keep["mmsi"] = keep["mmsi"].astype("int64")
    dup = keep.duplicated(["mmsi", "time", "lat", "lon"], keep="first")
    if dup.any():
        rejects.append(pd.DataFrame({"row": keep.index[dup], "mmsi": keep.loc[dup, "mmsi"],
                                     "field": "time", "value": keep.loc[dup, "time"].astype(str),
                                     "reason": "duplicate fix"}))
        keep = keep.loc[~dup]
    keep.loc[keep["heading"] >= 360, "heading"] = np.nan  # 511 = not available
    keep.loc[keep["sog"] >= 102.2, "sog"] = np.nan  # 102.3 = not available
    keep.loc[keep["cog"] >= 360, "cog"] = np.nan  # 360 = not available
    keep["ship_type"] = _ship_type_codes(keep["ship_type"]) if "ship_type" in keep \
        else pd.array([pd.NA] * len(keep), dtype="Int64")
    for a, b, total in (("to_bow", "to_stern", "length"), ("to_port", "to_starboard", "beam")):
        derived = keep[a] + keep[b]
        keep[total] = keep[total].where(keep[total].notna() & (keep[total] > 0),
                                        derived.where(derived > 0))
    keep["ship_name"] = (keep["ship_name"].astype("string").str.strip().replace("", pd.NA)
                         if "ship_name" in keep else pd.array([pd.NA] * len(keep),
                                                              dtype="string"))
    keep["source"] = keep["source"].astype("string") if "source" in keep else source
    keep["provider"] = keep["provider"].astype("string") if "provider" in keep else provider
    extra = [c for c in OPTIONAL_COLUMNS if c in keep]
    keep = keep[POINT_COLUMNS + extra].sort_values(["mmsi", "time"], kind="stable")
    points = gpd.GeoDataFrame(keep, geometry=gpd.points_from_xy(keep["lon"], keep["lat"]),
                              crs="EPSG:4326")
    rej = (pd.concat(rejects, ignore_index=True) if rejects
           else pd.DataFrame(columns=REJECT_COLUMNS))
    return AisTable(points=points, rejects=rej.sort_values("row", kind="stable")
                    .reset_index(drop=True))
