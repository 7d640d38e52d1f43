"""position_at on synthetic tracks with known motion."""

import numpy as np
import pandas as pd
import pytest
from pyproj import Geod

from s2xr.ais import position_at

GEOD = Geod(ellps="WGS84")
T0 = pd.Timestamp("2026-09-30T10:56:00Z")


def track(mmsi, lon0, lat0, az, speed_ms, step_s, span_s=900, sog=True, rng=None):
    t = np.arange(-span_s, span_s + 1e-9, step_s)
    if rng is not None:
        t = t + rng.uniform(-0.3, 0.3, t.size) * step_s
    lon, lat, _ = GEOD.fwd(np.full(t.size, lon0), np.full(t.size, lat0), np.full(t.size, az),
                           speed_ms * t)
    df = pd.DataFrame({"mmsi": mmsi, "time": T0 + pd.to_timedelta(t, unit="s"), "lat": lat,
                       "lon": lon})
    if sog:
        df["sog"] = speed_ms / 0.514444
        df["cog"] = az
    return df


def test_interpolation_within_15m_for_10s_fixes():
    rng = np.random.default_rng(0)
    tracks = pd.concat([track(224000000 + i, -5.4 + 0.01 * i, 35.95, az, v, 10, rng=rng)
                        for i, (az, v) in enumerate([(0, 5), (45, 10), (200, 12), (300, 3)])])
    offsets = rng.uniform(-600, 600, 40)
    targets = pd.DataFrame({"mmsi": 224000000 + np.arange(40) % 4,
                            "time": T0 + pd.to_timedelta(offsets, unit="s")})
    res = position_at(tracks, targets)
    for (m, t), r in zip(targets.itertuples(index=False), res.itertuples(), strict=True):
        i = m - 224000000
        az, v = [(0, 5), (45, 10), (200, 12), (300, 3)][i]
        lon, lat, _ = GEOD.fwd(-5.4 + 0.01 * i, 35.95, az, v * (t - T0).total_seconds())
        _, _, err = GEOD.inv(lon, lat, r.lon, r.lat)
        assert err < 15, (m, err)
        assert r.method in ("interpolated", "exact") and abs(r.gap_s) <= 8
    assert res.index.equals(targets.index)


def test_extrapolation_limits_and_reasons():
    tr = track(224000001, -5.4, 35.95, 90, 5, 10, span_s=300)  # fixes from T0-300 to T0+300
    targets = pd.DataFrame({"mmsi": [224000001, 224000001, 224000001, 999999999],
                            "time": [T0 + pd.Timedelta(seconds=360),
                                     T0 + pd.Timedelta(seconds=500),
                                     T0 - pd.Timedelta(seconds=400), T0]})
    res = position_at(tr, targets, max_extrapolation_s=120)
    assert res.method.tolist() == ["extrapolated", "none", "extrapolated", "none"]
    lon, lat, _ = GEOD.fwd(-5.4, 35.95, 90, 5 * 360)
    _, _, err = GEOD.inv(lon, lat, res.lon[0], res.lat[0])
    assert err < 1 and res.gap_s[0] == pytest.approx(60, abs=0.01)
    lon, lat, _ = GEOD.fwd(-5.4, 35.95, 90, -5 * 400)
    _, _, err = GEOD.inv(lon, lat, res.lon[2], res.lat[2])
    assert err < 1
    assert "200 s" in res.reason[1] and res.reason[3] == "no AIS fix for this MMSI"
    assert np.isnan(res.lat[1]) and res.uncertainty_m[2] > res.uncertainty_m[0]
    # without SOG/COG: the two nearest fixes give the velocity
    no_sog = track(224000001, -5.4, 35.95, 90, 5, 10, span_s=300, sog=False)
    r2 = position_at(no_sog, targets.iloc[:1])
    _, _, err = GEOD.inv(res.lon[0], res.lat[0], r2.lon.iloc[0], r2.lat.iloc[0])
    assert err < 1


def test_large_gaps_are_not_interpolated():
    tr = pd.concat([track(224000002, -5.4, 35.95, 0, 5, 10, span_s=30).assign(
        time=lambda d: d.time - pd.Timedelta(hours=1)),
        track(224000002, -5.3, 35.95, 0, 5, 10, span_s=30).assign(
        time=lambda d: d.time + pd.Timedelta(hours=1))])
    res = position_at(tr, pd.DataFrame({"mmsi": [224000002], "time": [T0]}), max_gap_s=1800)
    assert res.method.iloc[0] == "none" and "from the time" in res.reason.iloc[0]


def test_many_ships_vectorised_index_preserved_and_inputs_untouched():
    rng = np.random.default_rng(5)
    specs = [(rng.uniform(0, 360), rng.uniform(1, 12)) for _ in range(60)]
    tracks = pd.concat([track(224100000 + i, -5.4 + 0.002 * i, 35.9, az, v, 10, rng=rng)
                        for i, (az, v) in enumerate(specs)]).sample(frac=1, random_state=1)
    before = tracks.copy()
    n = 600
    ship = rng.integers(0, 60, n)
    off = rng.uniform(-850, 850, n)
    targets = pd.DataFrame({"mmsi": 224100000 + ship,
                            "time": T0 + pd.to_timedelta(off, unit="s")},
                           index=pd.Index(rng.permutation(n) * 7 + 3, name="target"))
    res = position_at(tracks, targets)
    assert res.index.equals(targets.index)
    pd.testing.assert_frame_equal(tracks, before)
    az = np.array([specs[s][0] for s in ship])
    v = np.array([specs[s][1] for s in ship])
    lon, lat, _ = GEOD.fwd(-5.4 + 0.002 * ship, np.full(n, 35.9), az, v * off)
    _, _, err = GEOD.inv(lon, lat, res.lon.to_numpy(float), res.lat.to_numpy(float))
    assert err.max() < 15
    assert (res.uncertainty_m > 0).all() and res.reason.isna().all()
    gap = (targets.time - res.ais_time).dt.total_seconds()
    assert np.allclose(gap, res.gap_s) and (res.gap_s.abs() <= 8).all()


def test_exact_missing_time_and_antimeridian():
    tr = pd.DataFrame({"mmsi": [224000009] * 2, "time": [T0, T0 + pd.Timedelta(seconds=60)],
                       "lat": [60.0, 60.0], "lon": [179.999, -179.999]})
    res = position_at(tr, pd.DataFrame({"mmsi": [224000009] * 3,
                                        "time": [T0, T0 + pd.Timedelta(seconds=30), pd.NaT]}))
    assert res.method.tolist() == ["exact", "interpolated", "none"]
    assert res.lon[1] == pytest.approx(180.0, abs=1e-6) or res.lon[1] == pytest.approx(
        -180.0, abs=1e-6)
    assert res.reason[2] == "target has no time" and pd.isna(res.ais_time[2])
    assert res.gap_s[0] == 0 and res.uncertainty_m[0] < res.uncertainty_m[1]


def test_static_joined_to_positions():
    from s2xr.ais import join_static, static_table

    st = static_table([{"mmsi": 224000001, "time": T0, "ship_type": 70, "to_bow": 150,
                        "to_stern": 30, "to_port": 14, "to_starboard": 14,
                        "ship_name": " BIG ONE  ", "imo": 0},
                       {"mmsi": 224000001, "time": T0 + pd.Timedelta(minutes=1),
                        "call_sign": "CALL1"}])
    row = st.loc[224000001]
    assert (row.length, row.beam, row.ship_name, row.call_sign) == (180, 28, "BIG ONE",
                                                                    "CALL1")
    assert pd.isna(row.imo)  # 0 = not available
    pos = pd.DataFrame({"mmsi": [224000001, 224000002], "ship_type": [pd.NA, 60]})
    out = join_static(pos, st)
    assert out.ship_type.tolist() == [70, 60] and out.length.iloc[0] == 180
    assert pd.isna(out.length.iloc[1])
