"""Ship positions at a given time (the sensing time), from AIS tracks.

Between two fixes: great-circle interpolation (WGS84 geodesic). Past the last fix (or before
the first): dead reckoning with SOG/COG — or the velocity of the two nearest fixes — for at
most ``max_extrapolation_s``; beyond that, no position, with the reason. Vectorised with
NumPy per MMSI; 10⁵ fixes take well under a second.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pyproj import Geod

GEOD = Geod(ellps="WGS84")
KNOT = 0.514444  # m/s
RESULT_COLUMNS = ["lat", "lon", "ais_time", "gap_s", "method", "uncertainty_m", "reason"]


def position_at(tracks: pd.DataFrame, targets: pd.DataFrame, *,
                max_extrapolation_s: float = 120.0, max_gap_s: float = 1800.0) -> pd.DataFrame:
    """Positions of ``targets`` (columns mmsi, time) from ``tracks`` (mmsi, time, lat, lon,
    optional sog [kn], cog [deg]).

    Returns a DataFrame aligned to ``targets.index`` with lat, lon (NaN when unknown),
    ais_time (the fix nearest the target time), gap_s (target time − that fix, s),
    method ('exact' | 'interpolated' | 'extrapolated' | 'none'), uncertainty_m (an estimate
    growing with the gap and the speed) and reason (why there is no position, else None).
    Pure; does not modify its inputs.
    """
    out = pd.DataFrame(index=targets.index, columns=RESULT_COLUMNS)
    out["lat"] = np.nan
    out["lon"] = np.nan
    out["gap_s"] = np.nan
    out["uncertainty_m"] = np.nan
    out["ais_time"] = pd.Series(pd.NaT, index=targets.index, dtype="datetime64[ns, UTC]")
    out["method"] = "none"
    out["reason"] = "no AIS fix for this MMSI"
    if targets.empty:
        return out
    tr = tracks.loc[tracks["time"].notna(), ["mmsi", "time", "lat", "lon"] + [
        c for c in ("sog", "cog") if c in tracks]].copy()
    tr["t"] = pd.to_datetime(tr["time"], utc=True).astype("int64") / 1e9
    tr = tr.sort_values(["mmsi", "t"], kind="stable").drop_duplicates(["mmsi", "t"])
    tt = pd.to_datetime(targets["time"], utc=True).astype("int64").to_numpy() / 1e9
    groups = {m: g for m, g in tr.groupby("mmsi", sort=False)}
    for mmsi, idx in pd.Series(np.arange(len(targets))).groupby(
            targets["mmsi"].to_numpy()).groups.items():
        g = groups.get(mmsi)
        if g is None:
            continue
        rows = np.asarray(idx)
        _locate(g, tt[rows], out, targets.index[rows], max_extrapolation_s, max_gap_s)
    return out


def _locate(g: pd.DataFrame, t: np.ndarray, out: pd.DataFrame, where: pd.Index,
            max_ex: float, max_gap: float) -> None:
    ts = g["t"].to_numpy()
    lat = g["lat"].to_numpy(float)
    lon = g["lon"].to_numpy(float)
    sog = g["sog"].to_numpy(float) if "sog" in g else np.full(len(g), np.nan)
    cog = g["cog"].to_numpy(float) if "cog" in g else np.full(len(g), np.nan)
    n = len(ts)
    k = np.searchsorted(ts, t)  # ts[k-1] <= t < ts[k]
    prev = np.clip(k - 1, 0, n - 1)
    nxt = np.clip(k, 0, n - 1)
    has_prev = k > 0
    has_next = k < n
    d_prev = np.where(has_prev, t - ts[prev], np.inf)
    d_next = np.where(has_next, ts[nxt] - t, np.inf)
    near = np.where(d_prev <= d_next, prev, nxt)
    gap = t - ts[near]
    res_lat = np.full(t.size, np.nan)
    res_lon = np.full(t.size, np.nan)
    method = np.full(t.size, "none", dtype=object)
    reason = np.full(t.size, None, dtype=object)
    unc = np.full(t.size, np.nan)

    exact = np.abs(gap) <= 0.5
    res_lat[exact], res_lon[exact] = lat[near[exact]], lon[near[exact]]
    method[exact] = "exact"
    unc[exact] = 10.0

    span = np.where(has_prev & has_next, ts[nxt] - ts[prev], np.inf)
    interp = ~exact & has_prev & has_next & (span <= max_gap)
    if interp.any():
        p, q = prev[interp], nxt[interp]
        az, _, dist = GEOD.inv(lon[p], lat[p], lon[q], lat[q])
        f = (t[interp] - ts[p]) / span[interp]
        lo, la, _ = GEOD.fwd(lon[p], lat[p], az, dist * f)
        res_lat[interp], res_lon[interp] = la, lo
        method[interp] = "interpolated"
        speed = dist / span[interp]
        unc[interp] = 10.0 + 0.05 * speed * np.minimum(f, 1 - f) * span[interp]

    rest = ~exact & ~interp
    ok = rest & (np.abs(gap) <= max_ex)
    if ok.any():
        j = near[ok]
        dt = gap[ok]
        spd = sog[j] * KNOT
        crs = cog[j].copy()
        # no SOG/COG: the velocity between the nearest fix and its neighbour on that side
        missing = ~np.isfinite(spd) | ~np.isfinite(crs)
        if missing.any():
            other = np.where(dt >= 0, j - 1, j + 1)
            valid = (other >= 0) & (other < n)
            o = np.clip(other, 0, n - 1)
            az, _, dist = GEOD.inv(lon[o], lat[o], lon[j], lat[j])
            dtt = np.abs(ts[j] - ts[o])
            v = np.where(valid & (dtt > 0), dist / np.where(dtt > 0, dtt, 1), np.nan)
            heading = np.where(dt >= 0, az, (az + 180) % 360)
            spd = np.where(missing, v, spd)
            crs = np.where(missing, heading, crs)
        known = np.isfinite(spd) & np.isfinite(crs)
        step = np.where(known, spd * dt, 0.0)
        bearing = np.where(known, crs, 0.0)
        lo, la, _ = GEOD.fwd(lon[j], lat[j], bearing, step)
        res_lat[ok], res_lon[ok] = la, lo
        method[ok] = "extrapolated"
        speed = np.where(known, np.abs(spd), 10 * KNOT)
        unc[ok] = 10.0 + 0.1 * speed * np.abs(dt) + 0.5 * np.abs(dt)
    far = rest & ~ok
    reason[far] = [f"nearest fix is {abs(g):.0f} s from the time (limit {max_ex:.0f} s)"
                   for g in gap[far]]
    out.loc[where, "lat"] = res_lat
    out.loc[where, "lon"] = res_lon
    out.loc[where, "gap_s"] = gap
    out.loc[where, "method"] = method
    out.loc[where, "reason"] = reason
    out.loc[where, "uncertainty_m"] = unc
    out.loc[where, "ais_time"] = pd.to_datetime(ts[near], unit="s", utc=True)
