"""Overpass planning against real data: bundled CelesTrak TLEs, real ESA plans, a real
Earth Search sensing time and ESA's published acquisition calendar (tests/data/esa)."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from s2xr.ais.schedule import read_schedule
from s2xr.config import PlanningConfig
from s2xr.errors import PlanningError, TileError
from s2xr.grid import tiles_at
from s2xr.planning import (
    active_windows,
    backfill_passes,
    esa_windows,
    nominal_pass_time_of_day,
    parse_tiles,
    plot_schedule,
    predict_overpasses,
    predict_tle_passes,
    read_esa_plan,
    read_tle,
    select_tles,
    sun_elevation_deg,
    write_schedule,
)
from s2xr.planning.tle import parse_tle_text, propagate_ecef, tle_checksum

ESA = Path(__file__).parent / "data" / "esa"
UTC = "UTC"
# sensing time of the real Earth Search item S2A_39QTA_20230628_0_L2A (relative orbit 106)
REAL_39QTA = pd.Timestamp("2023-06-28T07:24:41.632Z")


def ts(s: str) -> pd.Timestamp:
    return pd.Timestamp(s).tz_convert(UTC) if pd.Timestamp(s).tzinfo else pd.Timestamp(
        s, tz=UTC)


@pytest.fixture(scope="module")
def tles():
    return select_tles(read_tle(None), ts("2026-09-30"))


@pytest.fixture(scope="module")
def s2a_plan():
    return read_esa_plan(ESA / "S2A_acquisition_plan_trimmed.kml")


# --- TLE ------------------------------------------------------------------------------------


def test_bundled_tles_are_the_2026_10_snapshot(tles):
    assert {s: f"{t.epoch:%Y-%m-%dT%H:%M:%S.%f}"[:-3] for s, t in tles.items()} == {
        "S2A": "2026-10-01T07:09:57.007", "S2B": "2026-10-01T06:59:39.003",
        "S2C": "2026-09-30T23:26:32.042"}
    assert {t.norad_id for t in tles.values()} == {40697, 42063, 60989}
    # the April set is picked for April dates, S2C (absent there) from October
    april = select_tles(read_tle(None), ts("2026-04-18"))
    assert april["S2A"].epoch.month == 4 and april["S2C"].epoch.month == 9


def test_s2c_39qta_window_contains_the_real_sensing_time_of_day(tles):
    # S2C flies S2A's old ground track; 1190 days = 119 whole 10-day cycles after the item
    assert (ts("2026-09-30") - REAL_39QTA.floor("D")).days == 1190
    want = ts("2026-09-30T07:24:41.632")
    for pad in (10.0, 0.0):
        df = predict_overpasses("39QTA", "2026-09-25", 10, PlanningConfig(
            overpass_window_minutes=pad), mode="tle", tles=tles)
        row = df[(df["satellite"] == "S2C") & (df["start_time_utc"].dt.day == 30)]
        assert len(row) == 1
        r = row.iloc[0]
        assert r.start_time_utc <= want <= r.end_time_utc
    assert abs((r.centre_time_utc - want).total_seconds()) < 10
    assert r.relative_orbit == 106 and r.source == "tle" and r.coverage == 1.0
    assert -70 < r.cross_track_km < -45  # tile centre west of the descending track


def test_propagation_matches_skyfield_earth_fixed_frame(tles):
    from skyfield.framelib import itrs

    from s2xr.planning.tle import _timescale

    t = pd.date_range("2026-09-30T07:00Z", periods=4, freq="17min")
    r, v = propagate_ecef(tles["S2C"], t)
    pos = tles["S2C"].earth_satellite.at(_timescale().from_datetimes(t.to_pydatetime()))
    rs, vs = pos.frame_xyz_and_velocity(itrs)
    assert np.abs(r - rs.km).max() < 0.01  # km
    assert np.abs(v - vs.km_per_s).max() < 1e-4
    assert np.allclose(np.linalg.norm(r, axis=0), 6378 + 786, atol=30)


def test_relative_orbits_and_dates_match_esa_calendar(tles):
    """ESA's merged calendar for a Swiss AOI lists (date, orbit, platform); the TLE must
    put 32TLT (Bern) under exactly those orbits of those satellites on those days."""
    cal = pd.read_csv(ESA / "acquisitionplan.csv")
    cal = cal[cal["Orbit"].isin([8, 65, 108])]  # orbit 22 images eastern Switzerland only
    passes = predict_tle_passes(["32TLT"], ts("2026-08-20"), ts("2026-09-08"), tles)
    got = {(f"{p.centre_time_utc:%Y-%m-%d}", int(p.relative_orbit), p.satellite)
           for p in passes.itertuples()}
    want = {(r["Acquisition Date"], int(r["Orbit"]), r["Platform"]) for _, r in cal.iterrows()}
    span = pd.read_csv(ESA / "acquisitionplan.csv").groupby("Platform")["Acquisition Date"]
    first, last = span.min().to_dict(), span.max().to_dict()
    assert {g for g in got if first[g[2]] <= g[0] <= last[g[2]]} == want
    assert {o for _, o, _ in got} == {8, 65, 108}


def test_sun_elevation_formula_agrees_with_de421():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from skyfield.api import Loader, wgs84
        from skyfield_data import get_skyfield_data_path

        eph = Loader(get_skyfield_data_path())("de421.bsp")
    from s2xr.planning.tle import _timescale

    times = pd.DatetimeIndex(["2026-09-30T07:24:41Z", "2026-12-21T10:00Z",
                              "2026-06-21T23:59Z"])
    lons, lats = np.array([48.68, -5.7, 179.5]), np.array([18.48, 36.5, 68.0])
    ours = sun_elevation_deg(times, lons, lats)
    for t, lo, la, e in zip(times, lons, lats, ours, strict=True):
        obs = eph["earth"] + wgs84.latlon(la, lo)
        alt, _, _ = obs.at(_timescale().from_datetime(t.to_pydatetime())).observe(
            eph["sun"]).apparent().altaz()
        assert abs(alt.degrees - e) < 0.2


def test_only_descending_daylit_passes(tles):
    # 01WCR (68°N) in polar night: no window; in June: windows around local noon (UTC midnight)
    winter = predict_tle_passes(["01WCR"], ts("2026-12-15"), ts("2026-12-20"), tles)
    assert winter.empty
    summer = predict_tle_passes(["01WCR"], ts("2026-06-20"), ts("2026-06-23"), tles)
    hours = summer["centre_time_utc"].dt.hour
    assert len(summer) and hours.isin([23, 0]).all()
    assert (summer["sun_elevation_deg"] > 0).all()


def _tle_text() -> list[str]:
    from s2xr.planning.tle import bundled_tle_paths

    return next(p for p in bundled_tle_paths() if p.name == "sentinel2.tle").read_text(
    ).splitlines()


def test_bad_tle_checksum_names_the_line():
    lines = _tle_text()
    bad = lines[4][:68] + str((int(lines[4][68]) + 1) % 10)  # S2B line 1 (file line 5)
    text = "\n".join([*lines[:4], bad, *lines[5:]])
    with pytest.raises(PlanningError, match=r"x\.tle: line 5: TLE line 1 checksum"):
        parse_tle_text(text, "x.tle")
    assert tle_checksum(lines[4]) == int(lines[4][68])


def test_bad_tle_length_names_the_line():
    lines = _tle_text()
    text = "\n".join([*lines[:2], lines[2][:60], *lines[3:]])
    with pytest.raises(PlanningError, match=r"line 3: TLE line 2 has 60 characters.*69"):
        parse_tle_text(text, "x.tle")
    with pytest.raises(PlanningError, match=r"line 2: TLE line 1 is not followed"):
        parse_tle_text("\n".join(lines[:2]), "x.tle")


def test_tle_file_without_sentinel2_is_an_error(tmp_path):
    iss = ("ISS (ZARYA)\n"
           "1 25544U 98067A   08264.51782528 -.00002182  00000-0 -11606-4 0  2927\n"
           "2 25544  51.6416 247.4627 0006703 130.5360 325.0288 15.72125391563537\n")
    p = tmp_path / "iss.tle"
    p.write_text(iss)
    with pytest.raises(PlanningError, match="no Sentinel-2A/2B/2C element set"):
        read_tle(p)
    with pytest.raises(PlanningError, match="does not exist"):
        read_tle(tmp_path / "missing.tle")


def test_old_tle_warns(tles, caplog):
    caplog.set_level(logging.WARNING)
    predict_overpasses("39QTA", "2027-03-01", 2, mode="tle", tles=tles)
    assert "days from the predicted dates" in caplog.text


# --- ESA plans ------------------------------------------------------------------------------


def test_esa_kml_parsed_as_published(s2a_plan):
    seg = s2a_plan.segments
    assert len(seg) == 46
    first = seg.iloc[0]
    assert first.plan_id == "49284-1" and first.satellite == "S2A" and first["mode"] == "NOBS"
    assert first.start_time_utc == ts("2024-11-28T12:50:30.621")
    assert first.end_time_utc == ts("2024-11-28T12:51:42.781")
    assert first.relative_orbit == 95 and first.orbit_absolute == 49284
    assert seg["mode"].value_counts().to_dict() == {"NOBS": 40, "VIC": 3, "DARK-O": 2,
                                                    "SUN": 1}
    assert s2a_plan.coverage["S2A"] == (ts("2024-11-28T12:00"), ts("2024-12-14T15:00"))
    s2c = read_esa_plan(ESA / "S2C_acquisition_plan_trimmed.kml").segments
    assert s2c.iloc[0].plan_id == "2210-1" and s2c.iloc[0].satellite == "S2C"
    assert s2c.iloc[0].start_time_utc == ts("2025-02-06T12:43:35.560")
    assert s2c.set_index("plan_id").loc["2353-4", "mode"] == "RAW"
    full = read_esa_plan(ESA / "S2A_acquisition_plan_full.kml.gz").segments
    assert len(full) == 758 and (full["mode"] == "NOBS").sum() == 721


def test_esa_windows_match_placemark_times(s2a_plan):
    nobs = s2a_plan.segments[s2a_plan.segments["mode"] == "NOBS"]
    checked = 0
    for s in nobs.itertuples():
        if not -60 < s.geometry.centroid.y < 60 or s.geometry.area < 5:
            continue
        c = s.geometry.centroid
        tile = tiles_at(c.x, c.y)[0]
        w = esa_windows(s2a_plan, [tile], ts("2024-11-28"), ts("2024-12-15"))
        w = w[w["plan_id"] == s.plan_id]
        assert len(w) == 1, (s.plan_id, tile)
        r = w.iloc[0]
        assert s.start_time_utc <= r.sensing_start_utc <= r.centre_time_utc
        assert r.centre_time_utc <= r.sensing_end_utc <= s.end_time_utc
        # narrowed to the tile: ~17 s of a 110 km tile at 6.6 km/s, not the whole segment
        assert 10 < (r.sensing_end_utc - r.sensing_start_utc).total_seconds() < 40
        assert r.relative_orbit == s.relative_orbit
        checked += 1
    assert checked >= 8


def test_esa_window_for_39qta_is_at_the_real_time_of_day(s2a_plan):
    w = esa_windows(s2a_plan, ["T39QTA"], ts("2024-11-28"), ts("2024-12-15"))
    assert list(w["plan_id"]) == ["49295-1"]  # 07:12:37–07:29:56, R106
    r = w.iloc[0]
    same_slot = ts("2024-11-29") + (REAL_39QTA - REAL_39QTA.floor("D"))  # 52 cycles later
    assert abs((r.centre_time_utc - same_slot).total_seconds()) < 15
    assert -70 < r.cross_track_km < -45 and r.coverage == 1.0


def test_tile_outside_every_swath_gets_no_esa_window(s2a_plan, caplog):
    w = esa_windows(s2a_plan, ["30STF"], ts("2024-11-28"), ts("2024-12-15"))
    assert w.empty
    caplog.set_level(logging.WARNING)
    df = predict_overpasses("30STF", "2024-11-28", 2, mode="esa_plan", esa_plan=s2a_plan)
    assert df.empty and "empty schedule" in caplog.text


def test_esa_plan_mode_rows_are_padded_segments():
    cfg = PlanningConfig(esa_plan_path=str(ESA / "S2A_acquisition_plan_trimmed.kml"),
                         overpass_window_minutes=5)
    df = predict_overpasses("39QTA,30STF", "2024-11-28", 3, cfg, mode="esa_plan")
    assert list(df["source"]) == ["esa_plan"] and list(df["satellite"]) == ["S2A"]
    r = df.iloc[0]
    assert r.plan_id == "49295-1"
    assert ts("2024-11-29T07:12:37.567") - pd.Timedelta(minutes=5) <= r.start_time_utc
    assert r.end_time_utc <= ts("2024-11-29T07:29:56.671") + pd.Timedelta(minutes=5)


def test_non_esa_kml_is_a_clear_error(tmp_path):
    p = tmp_path / "places.kml"
    p.write_text('<?xml version="1.0"?><kml xmlns="http://www.opengis.net/kml/2.2"><Document>'
                 "<Placemark><name>home</name><Point><coordinates>1,2,0</coordinates></Point>"
                 "</Placemark></Document></kml>")
    with pytest.raises(PlanningError, match="not an ESA acquisition plan"):
        read_esa_plan(p)
    p.write_text("<html><body>maintenance</body></html>")
    with pytest.raises(PlanningError, match="not <kml>"):
        read_esa_plan(p)
    p.write_text("<kml><Document>")
    with pytest.raises(PlanningError, match="not valid XML"):
        read_esa_plan(p)
    p.write_text("a,b\n1,2\n")
    with pytest.raises(PlanningError, match="not an acquisition-plan CSV"):
        read_esa_plan(p)


def test_plan_csv_rows_are_placed_by_orbit(tles):
    """The AOI export (Switzerland) has times and orbits, no geometry: its rows land on the
    tiles the TLE puts under the same satellite's same relative orbit that day."""
    plan = read_esa_plan(ESA / "S2B_acquisition_plan_AOI.csv")
    assert plan.coverage["S2B"] == (ts("2025-02-15"), ts("2025-03-02"))
    w = esa_windows(plan, ["32TLT"], ts("2025-02-13"), ts("2025-03-03"), tles=tles)
    rows = pd.read_csv(ESA / "S2B_acquisition_plan_AOI.csv")
    r108 = rows[rows["OrbitRelative"] == 108]  # R108 covers 32TLT (Bern) fully
    got = w[w["relative_orbit"] == 108]
    assert [f"{t:%m-%d}" for t in got["centre_time_utc"]] == [
        f"{pd.Timestamp(t):%m-%d}" for t in r108["ObservationTimeStart"]]
    # the CSV time is the start of the data-take segment that reaches the AOI
    for t_aoi, t_tile in zip(pd.to_datetime(r108["ObservationTimeStart"], utc=True),
                             got["centre_time_utc"], strict=True):
        assert 0 < (t_tile - t_aoi).total_seconds() < 15 * 60
    assert set(w["relative_orbit"]) <= {8, 65, 108}  # R22 does not reach 32TLT


def test_aoi_csv_parsed():
    plan = read_esa_plan(ESA / "S2A_acquisition_plan_AOI.csv")
    seg = plan.segments
    assert len(seg) == 7 and set(seg["satellite"]) == {"S2A"}
    assert seg.iloc[0].start_time_utc == ts("2024-11-29T10:34:02.410")
    assert list(seg["relative_orbit"]) == [108, 8, 22, 65, 108, 8, 22]
    assert plan.coverage["S2A"] == (ts("2024-11-29"), ts("2024-12-14"))


@pytest.fixture()
def plan_server():
    """ESA plans served over HTTP on 127.0.0.1 (the optional plan URL)."""
    import functools
    import http.server
    import threading

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(ESA))
    handler.log_message = lambda *a: None  # type: ignore[attr-defined]
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_plan_url_is_used_when_reachable_and_never_required(plan_server, caplog):
    cfg = PlanningConfig(esa_plan_urls=(f"{plan_server}/S2A_acquisition_plan_trimmed.kml",))
    df = predict_overpasses("39QTA", "2024-11-28", 3, cfg, mode="auto")
    assert list(df.loc[df["satellite"] == "S2A", "plan_id"]) == ["49295-1"]
    caplog.set_level(logging.WARNING)
    cfg = PlanningConfig(esa_plan_urls=(f"{plan_server}/missing.kml",))
    df = predict_overpasses("39QTA", "2026-09-25", 10, cfg, mode="auto")
    assert set(df["source"]) == {"tle"} and len(df)
    assert "cannot fetch ESA plan" in caplog.text


def test_auto_prefers_the_plan_and_says_so(caplog):
    caplog.set_level(logging.INFO)
    cfg = PlanningConfig(esa_plan_path=str(ESA / "S2A_acquisition_plan_trimmed.kml"))
    df = predict_overpasses("39QTA", "2024-11-28", 3, cfg, mode="auto")
    assert set(df["source"]) <= {"esa_plan", "tle"} and "backfill" not in set(df["source"])
    s2a = df[df["satellite"] == "S2A"]
    assert set(s2a["source"]) == {"esa_plan"}
    assert "auto: S2A from the ESA plan" in caplog.text
    assert "auto: S2B from the TLE" in caplog.text
    # no plan configured: TLE only
    df2 = predict_overpasses("39QTA", "2026-09-25", 10, PlanningConfig(), mode="auto")
    assert set(df2["source"]) == {"tle"} and set(df2["satellite"]) == {"S2A", "S2B", "S2C"}


def test_esa_mode_without_a_plan_is_an_error():
    with pytest.raises(PlanningError, match="needs an ESA acquisition plan"):
        predict_overpasses("39QTA", "2026-09-25", 1, PlanningConfig(), mode="esa_plan")


# --- tiles, backfill ------------------------------------------------------------------------


def test_unknown_tiles_are_listed_together():
    assert parse_tiles("T39QTA, 30stf,39QTA") == ["39QTA", "30STF"]
    with pytest.raises(TileError) as e:
        predict_overpasses("39QTA,ZZZ,99QTA,30STF,61XAA", "2026-09-25", 1, mode="tle")
    assert all(t in str(e.value) for t in ("'ZZZ'", "'99QTA'", "'61XAA'"))


def test_empty_horizon_is_a_warning_not_a_crash(tles, caplog):
    caplog.set_level(logging.WARNING)
    df = predict_overpasses("01WCR", "2026-12-15", 3, mode="tle", tles=tles)
    assert df.empty and list(df.columns)[:4] == ["tile_id", "satellite", "start_time_utc",
                                                 "end_time_utc"]
    assert "no Sentinel-2 overpass of 01WCR" in caplog.text
    # backfill folds dates into the TLE's cycle but checks daylight on the real dates
    dark = predict_overpasses("01WCR", "2025-12-15", 3, mode="backfill", tles=tles)
    assert dark.empty


def test_backfill_days_at_the_real_pass_time(tles, caplog):
    caplog.set_level(logging.WARNING)
    now = ts("2026-11-01")
    df = predict_overpasses("39QTA", "2026-09-25", 7, mode="backfill", tles=tles, now=now)
    assert set(df["source"]) == {"backfill"}
    assert set(df["centre_time_utc"].dt.day) == {25, 26, 27, 28, 29, 30, 1}
    assert (df["centre_time_utc"].dt.strftime("%H:%M").between("07:20", "07:40")).all()
    real = df[df["satellite"] == "S2C"]
    assert (real["relative_orbit"] == 106).any()
    filler = df[df["satellite"] == "S2"]
    assert len(filler) and filler["relative_orbit"].isna().all()
    assert "backfill covers days after now" not in caplog.text
    # without TLEs: 10:30 local solar time carried to the tile's latitude, not 10:30 UTC
    nt = backfill_passes(["39QTA"], ts("2026-09-25"), ts("2026-09-27"), None, now=now)
    assert len(nt) == 2 and set(nt["plan_id"] if "plan_id" in nt else nt["basis"]) == {
        "10:30 LST"}
    assert nt["centre_time_utc"].dt.strftime("%H:%M").between("07:25", "07:29").all()
    assert abs(nominal_pass_time_of_day(7.08, 47.34) - 10.65) < 0.05  # Bern: ~10:39 UTC
    backfill_passes(["39QTA"], ts("2026-11-25"), ts("2026-11-26"), tles, now=now)
    assert "backfill covers days after now" in caplog.text


# --- output ---------------------------------------------------------------------------------


def test_schedule_csv_round_trips_through_the_collector_reader(tmp_path, tles):
    df = predict_overpasses("39QTA,30STF", "2026-09-25", 10, mode="tle", tles=tles)
    path = write_schedule(df, tmp_path, run_time=ts("2026-09-24T12:00:00"))
    assert path == tmp_path / "plan" / "overpass_schedule.csv"
    copy = tmp_path / "plan" / "schedules" / "20260924" / "overpass_schedule_120000Z.csv"
    assert copy.read_text() == path.read_text()
    assert not list(path.parent.glob(".*tmp"))
    raw = pd.read_csv(path, dtype=str)
    assert raw["start_time_utc"].str.endswith("Z").all()
    assert set(raw["satellite"]) == {"S2A", "S2B", "S2C"}
    back = read_schedule(path)
    assert (back["start_time_utc"] == df["start_time_utc"].dt.round("ms")).all()
    assert (back["end_time_utc"] == df["end_time_utc"].dt.round("ms")).all()
    assert list(back["tile_id"]) == list(df["tile_id"])
    write_schedule(df, tmp_path, run_time=ts("2026-09-24T12:00:00"))  # same second: no clobber
    assert len(list(copy.parent.iterdir())) == 2


def test_active_windows(tles, tmp_path):
    df = predict_overpasses("39QTA,30STF", "2026-09-25", 10, mode="tle", tles=tles)
    at = ts("2026-09-30T07:24:41")
    act = active_windows(df, at)
    assert list(act["tile_id"]) == ["39QTA"] and list(act["satellite"]) == ["S2C"]
    assert active_windows(df, ts("2026-09-30T12:00")).empty
    path = write_schedule(df, tmp_path)
    assert list(active_windows(path, at)["satellite"]) == ["S2C"]


def test_plot_schedule_writes_png(tmp_path, tles):
    df = predict_overpasses("39QTA,30STF", "2026-09-25", 10, mode="tle", tles=tles)
    for frame, name in ((df, "a.png"), (df.iloc[:0], "empty.png")):
        p = plot_schedule(frame, tmp_path / name)
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000
