"""MMSIs as ITU-R M.585 allows them (every source), and times parsed row by row."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from s2xr.ais import FrameParser, read_ais_table
from s2xr.ais.fixtime import parse_times
from s2xr.ais.mmsi import check_mmsi, parse_mmsi, structure_ok, structure_problem

DAY = "2026-09-30T10:00:00Z"


def csv(tmp_path, text: str, name: str = "ais.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


# ----------------------------------------------------------------------------- MMSI
def test_mmsi_text_must_be_nine_digits_as_written(tmp_path):
    """A CSV's MMSI is validated as written: no exponent, padding, decimal point or sign;
    the raw value stays in `value` as text and `mmsi` is <NA> (Int64), never the raw value."""
    bad = ["2.35e8", '" 235000001 "', "../../tmp/x", "18446744073709551615", "235000001.0",
           "+23500000", "23500000", "2350000011"]
    lines = ["mmsi,lat,lon,time", f"235000001,36.0,-5.4,{DAY}"]
    lines += [f"{m},36.0,-5.4,{DAY}" for m in bad]
    t = read_ais_table(csv(tmp_path, "\n".join(lines) + "\n"))
    assert list(t.points.mmsi) == [235000001] and t.points.mmsi.dtype == "int64"
    rej = t.rejects
    assert list(rej.row) == list(range(1, len(bad) + 1))
    assert str(rej.mmsi.dtype) == "Int64" and rej.mmsi.isna().all()
    assert set(rej.field) == {"mmsi"}
    raw = [b.strip('"') for b in bad]
    assert list(rej.value) == raw
    assert rej.reason.iloc[0] == "mmsi: '2.35e8' is not 9 digits"
    assert rej.reason.iloc[1] == "mmsi: ' 235000001 ' is not 9 digits"
    for r, v in zip(rej.reason, raw, strict=True):
        assert r.startswith("mmsi: ") and repr(v) in r


def test_mmsi_numbers_integral_in_range_and_other_rejects_keep_a_typed_mmsi(tmp_path):
    df = pd.DataFrame({"mmsi": [235000001.0, np.nan, 235000002.5, 2.35e8, -235000001.0,
                                1e20],
                       "lat": [36.0, 36.0, 36.0, 36.0, 36.0, 36.0],
                       "lon": [-5.4] * 6, "time": [DAY] * 6})
    t = read_ais_table(df)
    assert list(t.points.mmsi) == [235000000, 235000001]  # gaps make int columns float
    why = dict(zip(t.rejects.row, t.rejects.reason, strict=True))
    assert why[1] == "mmsi: missing"
    assert why[2] == "mmsi: '235000002.5' is not 9 digits"
    assert why[4] == "mmsi: '-235000001.0' is not 9 digits" and "is not 9 digits" in why[5]
    # uint64 (what a CSV reader makes of 18446744073709551615 next to valid ones)
    u = read_ais_table(pd.DataFrame({"mmsi": np.array([18446744073709551615, 235000001],
                                                      dtype="uint64"),
                                     "lat": [36.0, 95.0], "lon": [-5.4, -5.4]}))
    assert u.points.empty
    assert list(u.rejects.field) == ["mmsi", "lat"]
    assert u.rejects.mmsi.isna().tolist() == [True, False]  # a lat reject keeps its MMSI
    assert u.rejects.mmsi.iloc[1] == 235000001 and str(u.rejects.mmsi.dtype) == "Int64"
    # a file of only bad MMSIs still writes a parquet with fixed types
    u.rejects.to_parquet(tmp_path / "rej.parquet")
    back = pd.read_parquet(tmp_path / "rej.parquet")
    assert str(back.mmsi.dtype) == "Int64" and str(back.value.dtype).startswith("string")


VALID = {
    "ship station MIDxxxxxx": [201000000, 235000001, 775999999, 366123456],
    "group 0MIDxxxxx": [23500000, 77512345],  # numbers lose the leading 0
    "coast station 00MIDxxxx": [2320001, 7751234],
    "SAR aircraft 111MIDxxx": [111235001],
    "handheld 8MIDxxxxx": [823512345],
    "craft associated 98MIDxxxx": [982351234],
    "aid to navigation 99MIDxxxx": [992351234, 992240001],
    "SART / MOB / EPIRB-AIS": [970123456, 972000001, 974999999],
}
INVALID = {
    123456789: "111MIDxxx", 198765432: "111MIDxxx", 200000000: "MID 200",
    776000000: "MID 776", 990000001: "MID 000", 999999999: "MID 999",
    100000000: "111MIDxxx", 112235001: "111MIDxxx",
    111100001: "MID 100", 971000001: "98MIDxxxx", 12345: "MID 001", 0: "MID 000",
    802012345: "MID 020", 980001234: "MID 000",
}


def test_mmsi_structure_follows_itu_r_m585():
    for kind, values in VALID.items():
        for v in values:
            assert structure_problem(f"{v:09d}") is None, (kind, v)
            assert parse_mmsi(v) == v and parse_mmsi(f"{v:09d}") == v
    for v, why in INVALID.items():
        assert why in structure_problem(f"{v:09d}"), v
        assert parse_mmsi(v) is None
    checked = check_mmsi(pd.Series(list(INVALID)))
    assert checked.mmsi.isna().all()
    assert all("ITU-R M.585" in r for r in checked.reason)
    every = [v for vs in VALID.values() for v in vs]
    t = read_ais_table(pd.DataFrame({"mmsi": [*INVALID, *every],
                                     "lat": 36.0, "lon": -5.4}))
    assert sorted(t.points.mmsi) == sorted(every)
    assert t.rejects.reason.str.contains("ITU-R M.585").sum() == len(INVALID)
    # the vectorised rule is the scalar one, everywhere
    rng = np.random.default_rng(5)
    n = np.concatenate([rng.integers(0, 10**9, 100_000), np.arange(0, 10**9, 9973)])
    assert (structure_ok(n) == np.array([structure_problem(f"{x:09d}") is None
                                         for x in n])).all()


def test_excel_like_mixed_cells_and_text_columns(tmp_path):
    mixed = pd.Series(["235000001", 235000002, 235000003.0, " 235000004", True, None,
                       "2350000O5"], dtype=object)
    c = check_mmsi(mixed)
    assert c.mmsi.tolist()[:3] == [235000001, 235000002, 235000003]
    assert c.mmsi.iloc[3:].isna().all()
    assert c.reason[3] == "mmsi: ' 235000004' is not 9 digits"
    assert c.reason[5] == "mmsi: missing"
    for dtype in ("string", "string[pyarrow]"):
        s = check_mmsi(pd.Series(["235000001", "2.35e8", None], dtype=dtype))
        assert s.mmsi.tolist()[0] == 235000001 and s.mmsi.iloc[1:].isna().all()
    # Parquet keeps the column's type: text is validated as text
    pd.DataFrame({"mmsi": ["235000001", "2.35e8"], "lat": [36.0, 36.0],
                  "lon": [-5.4, -5.4]}).to_parquet(tmp_path / "a.parquet")
    t = read_ais_table(tmp_path / "a.parquet")
    assert list(t.points.mmsi) == [235000001] and list(t.rejects.value) == ["2.35e8"]


def frame(mmsi: object, lat: float = 36.0) -> str:
    return json.dumps({"MessageType": "PositionReport",
                       "MetaData": {"MMSI": mmsi, "MMSI_String": mmsi, "ShipName": "X",
                                    "latitude": lat, "longitude": -5.4,
                                    "time_utc": "2026-09-30 10:00:00.0 +0000 UTC"},
                       "Message": {"PositionReport": {"Latitude": lat, "Longitude": -5.4,
                                                      "Sog": 1, "Cog": 2,
                                                      "TrueHeading": 3}}})


def test_aisstream_frames_use_the_same_mmsi_rule(tmp_path):
    parser = FrameParser()
    now = pd.Timestamp("2026-09-30T12:00Z")
    bad = ["2.35e8", " 235000001 ", 235000001.5, "../../tmp/x", 123456789,
           18446744073709551615, 990000001, True]
    for m in bad:
        assert parser.parse(frame(m), now=now) is None, m
        assert parser.last_skip == "bad_mmsi", m
    ok = parser.parse(frame(235000001), now=now)
    assert ok.kind == "position" and ok.row["mmsi"] == 235000001
    assert parser.counts["bad_mmsi"] == len(bad)
    # a JSONL file of such frames: rejects, never a traceback
    path = tmp_path / "f.jsonl"
    path.write_text("\n".join([frame(235000001), *[frame(m, 36.1) for m in bad]]) + "\n")
    t = read_ais_table(path)
    assert list(t.points.mmsi) == [235000001]
    assert (t.rejects.reason == "aisstream frame: bad_mmsi").sum() == len(bad)
    assert str(t.rejects.mmsi.dtype) == "Int64"


def test_demo_fleet_and_real_fixtures_have_valid_mmsis():
    from pathlib import Path

    from s2xr.ais import read_nmea
    from s2xr.demo.fleet import make_fleet

    fleet = make_fleet(np.random.default_rng(20260930), 400)
    assert all(parse_mmsi(s.mmsi) == s.mmsi for s in fleet)
    data = Path(__file__).parent / "data" / "ais"
    pos, _ = read_nmea(data / "sample.nmea")
    assert check_mmsi(pos.mmsi).ok.all()
    t = read_ais_table(data / "messages.jsonl")
    assert t.rejects.empty and len(t.points) > 0


# ----------------------------------------------------------------------------- time
def test_mixed_offsets_are_parsed_row_by_row(tmp_path):
    """+05:30, Z, -03:00 and naive times interleaved: every row has its own UTC time (naive
    is UTC); no offset is carried from one row to the next, also across chunks."""
    base = pd.Timestamp("2026-09-30T10:00:00Z")
    kinds = ["+05:30", "", "Z", "", "", "-03:00", "+05:30", ""]
    shift = {"+05:30": pd.Timedelta(hours=-5.5), "": pd.Timedelta(0), "Z": pd.Timedelta(0),
             "-03:00": pd.Timedelta(hours=3)}
    rows, want = [], []
    for i in range(400):
        k = kinds[i % len(kinds)]
        local = base + pd.Timedelta(seconds=37 * i)
        sep = " " if i % 3 == 0 else "T"
        rows.append(f"{235000001 + i % 5},36.{i:04d},-5.4,"
                    f"{local.strftime(f'%Y-%m-%d{sep}%H:%M:%S')}{k}")
        want.append(local + shift[k])
    rows.append("235000001,36.5,-5.4,30/02/2026 25:61")  # not a time
    path = csv(tmp_path, "mmsi,lat,lon,time\n" + "\n".join(rows) + "\n")
    for chunk_rows in (None, 7):
        t = read_ais_table(path, **({"chunk_rows": chunk_rows} if chunk_rows else {}))
        got = t.points.sort_index()
        assert list(got.index) == list(range(400))
        assert list(got.time) == want
        assert list(t.rejects.row) == [400]
        assert t.rejects.reason.iloc[0] == "time: cannot parse"
        assert t.rejects.value.iloc[0] == "30/02/2026 25:61"
        assert t.rejects.mmsi.iloc[0] == 235000001


def test_parse_times_forms():
    s = pd.Series(["2026-01-01T10:00:00+05:30", "2026-01-01T10:00:00",
                   "2024-09-17 14:38:55.281038479 +0000 UTC", "2026-01-01 10:00:00 UTC",
                   "2026-01-01", "2026-01-01T10:00+01", "20260101T100000+0530",
                   "2026-01-01T10:00:00.123456789", "", None, "soon"])
    t = parse_times(s)
    assert str(t.dtype) == "datetime64[ns, UTC]"
    assert list(t[:8]) == [pd.Timestamp(x) for x in (
        "2026-01-01T04:30Z", "2026-01-01T10:00Z", "2024-09-17T14:38:55.281038479Z",
        "2026-01-01T10:00Z", "2026-01-01T00:00Z", "2026-01-01T09:00Z", "2026-01-01T04:30Z",
        "2026-01-01T10:00:00.123456789Z")]
    assert t[8:].isna().all()
    dmy = parse_times(pd.Series(["02/03/2024 10:20:30", "13/03/2024 10:20:31+01:00"]),
                      dayfirst=True)
    assert list(dmy) == [pd.Timestamp("2024-03-02T10:20:30Z"),
                         pd.Timestamp("2024-03-13T09:20:31Z")]
    # datetime columns and unix seconds
    naive = pd.Series(pd.to_datetime(["2026-01-01T10:00"]))
    assert parse_times(naive).iloc[0] == pd.Timestamp("2026-01-01T10:00Z")
    assert parse_times(pd.Series([1_700_000_000])).iloc[0] == pd.Timestamp(1_700_000_000,
                                                                           unit="s", tz="UTC")


@pytest.mark.slow
def test_time_parsing_stays_vectorised():
    """1.5 M mixed rows: offsets and naive split, not one dateutil call per row."""
    import time

    n = 1_500_000
    base = np.datetime64("2026-09-30T10:00:00", "s") + np.arange(n).astype("timedelta64[s]")
    text = np.datetime_as_string(base)
    text = np.where(np.arange(n) % 4 == 0, np.char.add(text, "+05:30"), text)
    t0 = time.perf_counter()
    t = parse_times(pd.Series(text))
    took = time.perf_counter() - t0
    assert t.notna().all()
    assert t.iloc[0] == pd.Timestamp("2026-09-30T04:30Z")
    assert t.iloc[1] == pd.Timestamp("2026-09-30T10:00:01Z")
    assert took < 60  # dateutil row by row takes several minutes here
