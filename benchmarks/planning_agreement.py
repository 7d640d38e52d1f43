"""TLE versus ESA plan (and real sensing times): how well do the two planning modes agree?

    .venv/bin/python benchmarks/planning_agreement.py            # full S2A plan + S2B/S2C
    .venv/bin/python benchmarks/planning_agreement.py --quick    # fewer tile-segments

For every nominal (NOBS) segment of the real ESA plans in ``tests/data/esa`` (the complete
S2A plan of 2024-11-28..12-14, and the trimmed S2B and S2C plans of February 2025), tiles
whose centres lie inside the swath are planned twice:

* ESA mode — :func:`s2xr.planning.esa_windows` on the plan;
* TLE mode — :func:`s2xr.planning.predict_tle_passes` with the bundled 2026-10 TLEs, on the
  same date shifted by a whole number of 10-day repeat cycles into the TLE epoch, then
  shifted back. S2C's TLE stands in for S2A's 2024 plan (S2C took S2A's orbital slot in
  2025); S2B and S2C plans are compared with their own TLEs.

Differences are TLE − ESA of the tile-centre sensing time, of the sensing start/end, and of
the cross-track distance; plus the share of pairs with the same relative orbit and of ESA
tile-segments the TLE finds at all. Real sensing times of the Earth Search items in
``tests/data/stac`` are compared the same way. The last line is a JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from s2xr.grid import tiles_at_many
from s2xr.planning import esa_windows, predict_tle_passes, read_esa_plan, read_tle, select_tles
from s2xr.planning.tle import CYCLE_DAYS

ROOT = Path(__file__).resolve().parent.parent
ESA = ROOT / "tests" / "data" / "esa"
STAC = ROOT / "tests" / "data" / "stac"
PLANS = (("S2A_acquisition_plan_full.kml.gz", "S2C"),
         ("S2B_acquisition_plan_trimmed.kml", "S2B"),
         ("S2C_acquisition_plan_trimmed.kml", "S2C"))


def fold(t: pd.Timestamp, epoch: pd.Timestamp) -> pd.Timedelta:
    """Whole 10-day cycles that bring ``t`` nearest ``epoch``."""
    return pd.Timedelta(days=CYCLE_DAYS * round((epoch - t) / pd.Timedelta(days=CYCLE_DAYS)))


def tiles_in_swath(geom, per_segment: int) -> list[str]:
    """Tiles whose centre point lies inside the swath: sampled at the swath's mid-line
    and ±90 km across it (pairs of opposite ring vertices), then de-duplicated."""
    pts = np.asarray(geom.exterior.coords)[:-1] if hasattr(geom, "exterior") else None
    if pts is None or len(pts) < 6 or len(pts) % 2:
        return []
    n, h = len(pts), len(pts) // 2
    samples = []
    for i in range(1, h):
        w, e = pts[i], pts[n - i]
        for f in (0.19, 0.5, 0.81):  # 290 km swath → ≈ −90, 0, +90 km
            samples.append(w + f * (e - w))
    samples = np.array(samples)
    lon = (samples[:, 0] + 180) % 360 - 180
    out = []
    for cands in tiles_at_many(lon, samples[:, 1]):
        if cands and cands[0] not in out:
            out.append(cands[0])
    rng = np.random.default_rng(len(out))
    return list(rng.permutation(out)[:per_segment]) if len(out) > per_segment else out


def compare_plan(name: str, sat_tle: str, tles: dict, per_segment: int, max_segments: int
                 ) -> pd.DataFrame:
    plan = read_esa_plan(ESA / name)
    seg = plan.segments[(plan.segments["mode"] == "NOBS")]
    seg = seg[seg["geometry"].apply(lambda g: abs(g.centroid.y) < 75)]
    if len(seg) > max_segments:
        seg = seg.sample(max_segments, random_state=0)
    tle = tles[sat_tle]
    rows = []
    for s in seg.itertuples():
        tiles = tiles_in_swath(s.geometry, per_segment)
        if not tiles:
            continue
        a = s.start_time_utc - pd.Timedelta(minutes=2)
        b = s.end_time_utc + pd.Timedelta(minutes=2)
        esa = esa_windows(plan, tiles, a, b)
        esa = esa[esa["plan_id"] == s.plan_id]
        shift = fold(s.start_time_utc, tle.epoch)
        tp = predict_tle_passes(tiles, a + shift - pd.Timedelta(minutes=5),
                                b + shift + pd.Timedelta(minutes=5), {sat_tle: tle})
        for e in esa.itertuples():
            if e.coverage < 0.999:  # tile centre well inside: no edge effects
                continue
            m = tp[tp["tile_id"] == e.tile_id]
            row = {"plan": name, "plan_id": s.plan_id, "tile_id": e.tile_id,
                   "esa_orbit": int(e.relative_orbit), "found": len(m) > 0}
            if len(m):
                k = (m["centre_time_utc"] - shift - e.centre_time_utc).abs().argmin()
                p = m.iloc[k]
                row.update({
                    "tle_orbit": int(p.relative_orbit),
                    "d_centre_s": (p.centre_time_utc - shift - e.centre_time_utc
                                   ).total_seconds(),
                    "d_start_s": (p.sensing_start_utc - shift - e.sensing_start_utc
                                  ).total_seconds(),
                    "d_end_s": (p.sensing_end_utc - shift - e.sensing_end_utc).total_seconds(),
                    "d_cross_km": p.cross_track_km - e.cross_track_km})
            rows.append(row)
    return pd.DataFrame(rows)


def compare_items(tles: dict) -> pd.DataFrame:
    """Real Earth Search sensing times versus the TLE (folded the same way)."""
    rows = []
    for f in sorted(STAC.glob("*.json")):
        d = json.loads(f.read_text())
        p = d["properties"]
        t = pd.Timestamp(p["datetime"]).tz_convert("UTC")
        sat = {"sentinel-2a": "S2C", "sentinel-2b": "S2B"}.get(p["platform"])
        if sat is None:
            continue
        tile = p["grid:code"].split("-")[1]
        orbit = int(p["s2:product_uri"].split("_R")[1][:3])
        shift = fold(t, tles[sat].epoch)
        tp = predict_tle_passes([tile], t + shift - pd.Timedelta(hours=1),
                                t + shift + pd.Timedelta(hours=1), {sat: tles[sat]})
        k = (tp["centre_time_utc"] - shift - t).abs().argmin()
        q = tp.iloc[k]
        rows.append({"item": d["id"], "tle": sat, "orbit": orbit, "tle_orbit": int(
            q.relative_orbit), "d_centre_s": (q.centre_time_utc - shift - t).total_seconds()})
    return pd.DataFrame(rows)


def stats(x: pd.Series) -> dict:
    a = x.dropna().to_numpy(float)
    return {"median": round(float(np.median(a)), 2), "p95_abs": round(float(
        np.percentile(np.abs(a), 95)), 2), "max_abs": round(float(np.abs(a).max()), 2)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer segments and tiles")
    args = ap.parse_args()
    per_segment, max_segments = (3, 25) if args.quick else (6, 400)
    t0 = time.perf_counter()
    tles = select_tles(read_tle(None), pd.Timestamp("2026-10-01", tz="UTC"))
    frames = [compare_plan(n, s, tles, per_segment, max_segments) for n, s in PLANS]
    df = pd.concat(frames, ignore_index=True)
    items = compare_items(tles)
    found = df[df["found"]]
    result: dict = {
        "pairs": len(df), "segments": int(df["plan_id"].nunique()),
        "tiles": int(df["tile_id"].nunique()),
        "tle_found_share": round(float(df["found"].mean()), 4),
        "same_orbit_share": round(float((found["tle_orbit"] == found["esa_orbit"]).mean()), 4),
        "d_centre_s": stats(found["d_centre_s"]), "d_start_s": stats(found["d_start_s"]),
        "d_end_s": stats(found["d_end_s"]), "d_cross_km": stats(found["d_cross_km"]),
        "by_plan": {}, "items": items.to_dict(orient="records"),
        "seconds": round(time.perf_counter() - t0, 1)}
    print(f"{'plan':<36} {'pairs':>5} {'found':>6} {'orbit=':>6} {'Δcentre s: median':>18} "
          f"{'p95|Δ|':>7} {'max|Δ|':>7} {'Δx-track km med':>16}")
    for name, g in df.groupby("plan", sort=False):
        gf = g[g["found"]]
        st = stats(gf["d_centre_s"])
        result["by_plan"][name] = {"pairs": len(g), "d_centre_s": st,
                                   "d_cross_km": stats(gf["d_cross_km"]),
                                   "same_orbit_share": round(float(
                                       (gf["tle_orbit"] == gf["esa_orbit"]).mean()), 4)}
        print(f"{name:<36} {len(g):>5} {g['found'].mean():>6.1%} "
              f"{(gf['tle_orbit'] == gf['esa_orbit']).mean():>6.1%} {st['median']:>18.2f} "
              f"{st['p95_abs']:>7.2f} {st['max_abs']:>7.2f} "
              f"{np.median(gf['d_cross_km']):>16.2f}")
    print("\nEarth Search items (real sensing time) vs TLE:")
    for r in items.itertuples():
        print(f"  {r.item:<34} R{r.orbit:03d} (TLE {r.tle}: R{r.tle_orbit:03d}) "
              f"TLE − real = {r.d_centre_s:+.2f} s")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
