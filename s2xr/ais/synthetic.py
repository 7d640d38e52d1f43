"""Synthetic AIS for the embedded world and tests — labelled ``provider='synthetic'``
everywhere (the points' ``provider`` column and, in aisstream frames, ``MetaData.S2xrProvider``
which the parser copies into every stored row). Never used as a fallback for real capture:
nothing in :mod:`s2xr.ais.capture` imports this module.

* :func:`synthetic_tracks` — ships on great circles at constant speed, fixes every ``step_s``;
* :func:`to_aisstream_frames` — those fixes (and static data) as aisstream frames (JSON text);
* :func:`corrupt_frames` — mix in malformed frames of every kind the parser must skip.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import pandas as pd
from pyproj import Geod

from s2xr.ais.aisstream import PROVIDER_KEY, Box, format_aisstream_time

GEOD = Geod(ellps="WGS84")
KNOT = 0.514444
PROVIDER = "synthetic"
SHIP_TYPES = (30, 36, 37, 52, 60, 70, 70, 70, 80, 80)
MALFORMED_KINDS = ("truncated", "not_json", "array", "unknown_type", "missing_meta",
                   "missing_body", "lat_91", "lon_181", "zero_zero", "short_mmsi",
                   "future_time", "bad_time")


def synthetic_tracks(n_ships: int, start: pd.Timestamp | str, end: pd.Timestamp | str, *,
                     box: Box, step_s: float = 10.0, seed: int = 0,
                     speed_kn: tuple[float, float] = (3.0, 18.0),
                     first_mmsi: int = 235_000_001) -> pd.DataFrame:
    """Ships moving at constant speed and course along great circles, a fix every ``step_s``
    (each ship with its own time offset), starting at uniform points in ``box``.

    Returns DataFrame[mmsi, time, lat, lon, sog (kn), cog, heading, ship_type, length, beam,
    ship_name, class ('A'|'B'), provider='synthetic', source='synthetic'], sorted by time.
    The true position at any time t is ``GEOD.fwd(lon0, lat0, cog, sog·KNOT·(t − t0))``
    from the ship's first fix.
    """
    rng = np.random.default_rng(seed)
    start, end = pd.Timestamp(start), pd.Timestamp(end)
    start = start.tz_localize("UTC") if start.tzinfo is None else start.tz_convert("UTC")
    end = end.tz_localize("UTC") if end.tzinfo is None else end.tz_convert("UTC")
    span = (end - start).total_seconds()
    frames = []
    for i in range(n_ships):
        lat0 = rng.uniform(box.south, box.north)
        lon0 = rng.uniform(box.west, box.east)
        cog = rng.uniform(0, 360)
        sog = rng.uniform(*speed_kn)
        off = rng.uniform(0, step_s)
        t = np.arange(off, span, step_s)
        lon, lat, _ = GEOD.fwd(np.full(t.size, lon0), np.full(t.size, lat0),
                               np.full(t.size, cog), sog * KNOT * (t - off))
        length = float(rng.choice([12, 25, 60, 120, 180, 250, 330]))
        frames.append(pd.DataFrame({
            "mmsi": first_mmsi + i, "time": start + pd.to_timedelta(t, unit="s"),
            "lat": lat, "lon": lon, "sog": round(sog, 1), "cog": cog,
            "heading": float(round(cog) % 360), "ship_type": int(rng.choice(SHIP_TYPES)),
            "length": length, "beam": round(length / 6.5), "ship_name": f"SYNTH {i:04d}",
            "class": "B" if length < 30 else "A"}))
    if not frames:
        return pd.DataFrame(columns=["mmsi", "time", "lat", "lon", "sog", "cog", "heading",
                                     "ship_type", "length", "beam", "ship_name", "class",
                                     "provider", "source"])
    out = pd.concat(frames, ignore_index=True).sort_values(["time", "mmsi"], kind="stable")
    out["provider"] = PROVIDER
    out["source"] = PROVIDER
    return out.reset_index(drop=True)


def _meta(mmsi: int, name: str, lat: float, lon: float, t: pd.Timestamp, provider: str
          ) -> dict:
    meta = {"MMSI": int(mmsi), "MMSI_String": int(mmsi), "ShipName": f"{name:<20}",
            "latitude": float(lat), "longitude": float(lon),
            "time_utc": format_aisstream_time(t)}
    if provider == PROVIDER:
        meta[PROVIDER_KEY] = PROVIDER
    return meta


def _position(r: pd.Series, provider: str) -> dict:
    mtype = "StandardClassBPositionReport" if r["class"] == "B" else "PositionReport"
    body = {"Cog": round(float(r["cog"]), 1), "Latitude": float(r["lat"]),
            "Longitude": float(r["lon"]), "MessageID": 18 if r["class"] == "B" else 1,
            "Sog": float(r["sog"]), "TrueHeading": int(r["heading"]),
            "UserID": int(r["mmsi"]), "Valid": True}
    if r["class"] != "B":
        body["NavigationalStatus"] = 0
    return {"Message": {mtype: body}, "MessageType": mtype,
            "MetaData": _meta(r["mmsi"], r["ship_name"], r["lat"], r["lon"], r["time"],
                              provider)}


def _dimension(r: pd.Series) -> dict[str, int]:
    """AIS Dimension A/B/C/D (bow, stern, port, starboard of the antenna, m): the row's
    to_bow/to_stern/to_port/to_starboard when given, else 60 % forward and centred."""
    given = [r.get(k) for k in ("to_bow", "to_stern", "to_port", "to_starboard")]
    if all(v is not None and not pd.isna(v) for v in given):
        return dict(zip("ABCD", (round(float(v)) for v in given), strict=True))
    a = round(r["length"] * 0.6)
    return {"A": a, "B": int(r["length"]) - a, "C": int(r["beam"] // 2),
            "D": int(r["beam"]) - int(r["beam"] // 2)}


def _statics(r: pd.Series, provider: str) -> list[dict]:
    dim = _dimension(r)
    t = r["time"] - pd.Timedelta(milliseconds=1)
    meta = _meta(r["mmsi"], r["ship_name"], r["lat"], r["lon"], t, provider)
    if r["class"] == "B":
        meta_b = _meta(r["mmsi"], r["ship_name"], r["lat"], r["lon"],
                       t - pd.Timedelta(milliseconds=1), provider)
        return [
            {"Message": {"StaticDataReport": {
                "MessageID": 24, "PartNumber": False, "ReportA": {"Name": r["ship_name"],
                                                                  "Valid": True},
                "ReportB": {"CallSign": "", "Dimension": {"A": 0, "B": 0, "C": 0, "D": 0},
                            "ShipType": 0, "Valid": False},
                "UserID": int(r["mmsi"]), "Valid": True}},
             "MessageType": "StaticDataReport", "MetaData": meta_b},
            {"Message": {"StaticDataReport": {
                "MessageID": 24, "PartNumber": True, "ReportA": {"Name": "", "Valid": False},
                "ReportB": {"CallSign": f"S{int(r['mmsi']) % 100000:05d}", "Dimension": dim,
                            "ShipType": int(r["ship_type"]), "Valid": True},
                "UserID": int(r["mmsi"]), "Valid": True}},
             "MessageType": "StaticDataReport", "MetaData": meta}]
    return [{"Message": {"ShipStaticData": {
        "CallSign": f"S{int(r['mmsi']) % 100000:05d}", "Destination": "NOWHERE",
        "Dimension": dim, "ImoNumber": 9_000_000 + int(r["mmsi"]) % 1_000_000,
        "MessageID": 5, "Name": f"{r['ship_name']:<20}", "Type": int(r["ship_type"]),
        "UserID": int(r["mmsi"]), "Valid": True}},
        "MessageType": "ShipStaticData", "MetaData": meta}]


def to_aisstream_frames(points: pd.DataFrame, *, static: bool = True) -> list[str]:
    """Fixes (as :func:`synthetic_tracks` returns; ``class`` optional, default 'A') → compact
    aisstream JSON frames in time order; with ``static``, one ShipStaticData (class A) or a
    StaticDataReport part A + part B (class B) per ship just before its first fix. Frames
    carry ``MetaData.S2xrProvider = 'synthetic'`` when the points' provider is 'synthetic'."""
    pts = points.copy()
    if "class" not in pts:
        pts["class"] = "A"
    for c, v in (("ship_name", ""), ("sog", 0.0), ("cog", 0.0), ("heading", 511),
                 ("ship_type", 0), ("length", 0.0), ("beam", 0.0)):
        pts[c] = pts[c].fillna(v) if c in pts else v
    provider = str(pts["provider"].iloc[0]) if "provider" in pts and len(pts) else PROVIDER
    pts["time"] = pd.to_datetime(pts["time"], utc=True)
    pts = pts.sort_values(["time", "mmsi"], kind="stable")
    out: list[tuple[pd.Timestamp, str]] = []
    firsts = pts.groupby("mmsi", sort=False).head(1)
    if "length" in points:  # ships without static data send no static message
        known = points.groupby("mmsi")["length"].apply(lambda s: s.notna().any())
        firsts = firsts.loc[firsts["mmsi"].map(known).fillna(False).astype(bool)]
    if static:
        for _, r in firsts.iterrows():
            for f in _statics(r, provider):
                out.append((pd.Timestamp(f["MetaData"]["time_utc"].replace(" +0000 UTC", ""),
                                         tz="UTC"), json.dumps(f, separators=(",", ":"))))
    for _, r in pts.iterrows():
        out.append((r["time"], json.dumps(_position(r, provider), separators=(",", ":"))))
    out.sort(key=lambda x: x[0])
    return [s for _, s in out]


def corrupt_frames(frames: Sequence[str], n_bad: int, *, seed: int = 0
                   ) -> tuple[list[str], list[str]]:
    """Insert ``n_bad`` malformed frames (cycling through :data:`MALFORMED_KINDS`, each made
    from a random valid frame) at random places. Returns (all frames, kinds inserted)."""
    rng = np.random.default_rng(seed)
    bad, kinds = [], []
    for k in range(n_bad):
        kind = MALFORMED_KINDS[k % len(MALFORMED_KINDS)]
        src = frames[int(rng.integers(len(frames)))]
        f = json.loads(src)
        mtype = f["MessageType"]
        body = f["Message"][mtype]
        if kind == "truncated":
            text = src[: len(src) // 2]
        elif kind == "not_json":
            text = "<html>502 Bad Gateway</html>"
        elif kind == "array":
            text = "[1, 2, 3]"
        else:
            if kind == "unknown_type":
                f["MessageType"] = "NotARealMessageType"
            elif kind == "missing_meta":
                del f["MetaData"]
            elif kind == "missing_body":
                f["Message"] = {}
            elif kind in ("lat_91", "lon_181", "zero_zero"):
                f = _as_position(f)
                body = f["Message"][f["MessageType"]]
                if kind == "lat_91":
                    body["Latitude"] = 91.0
                elif kind == "lon_181":
                    body["Longitude"] = 181.0
                else:
                    body["Latitude"] = body["Longitude"] = 0.0
            elif kind == "short_mmsi":
                f["MetaData"]["MMSI"] = f["MetaData"]["MMSI_String"] = 12_345_678
                body["UserID"] = 12_345_678
            elif kind == "future_time":
                t = pd.Timestamp(f["MetaData"]["time_utc"].replace(" +0000 UTC", ""),
                                 tz="UTC")
                f["MetaData"]["time_utc"] = format_aisstream_time(t + pd.Timedelta(days=30))
            elif kind == "bad_time":
                f["MetaData"]["time_utc"] = "yesterday at noon"
            text = json.dumps(f, separators=(",", ":"))
        bad.append(text)
        kinds.append(kind)
    out = list(frames)
    for text in bad:
        out.insert(int(rng.integers(len(out) + 1)), text)
    return out, kinds


def _as_position(f: dict) -> dict:
    if f["MessageType"] in ("PositionReport", "StandardClassBPositionReport"):
        return f
    meta = f["MetaData"]
    return {"Message": {"PositionReport": {"Cog": 0.0, "Latitude": meta["latitude"],
                                           "Longitude": meta["longitude"], "MessageID": 1,
                                           "Sog": 0.0, "TrueHeading": 0,
                                           "UserID": meta["MMSI"], "Valid": True}},
            "MessageType": "PositionReport", "MetaData": meta}
