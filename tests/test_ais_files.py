"""AIS sources on real samples and common public layouts; bad rows recorded, not fatal."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from s2xr.ais import parse_aisstream_message, read_ais_table
from s2xr.errors import InputError

DATA = Path(__file__).parent / "data" / "ais"


def test_real_aisstream_messages_parse():
    t = read_ais_table(DATA / "messages.jsonl")
    p = t.points.set_index("mmsi")
    first = p.loc[538009327]
    assert first.ship_name == "NORDIC QINNGUA"  # stripped
    assert first.lat == pytest.approx(51.967933333333335)
    assert first.lon == pytest.approx(4.1139600000000005)
    assert first.time == pd.Timestamp("2023-10-15T09:51:08.143077274Z")  # ns kept
    assert first.heading == 307 and first.sog == pytest.approx(4.2)
    assert np.isnan(p.loc[211306490].heading)  # class B, TrueHeading 511
    assert set(t.points.provider) == {"aisstream"}
    # static data (ShipStaticData, A12 B10 C2 D3) parses to length/beam
    import json

    lines = [json.loads(x) for x in (DATA / "messages.jsonl").read_text().splitlines()]
    kind, row = parse_aisstream_message(next(m for m in lines
                                             if m["MessageType"] == "ShipStaticData"))
    assert kind == "static" and row["mmsi"] == 244660640
    assert (row["to_bow"] + row["to_stern"], row["to_port"] + row["to_starboard"]) == (22, 5)
    assert row["ship_name"] == "RVE 56" and row["ship_type"] == 99


def test_real_position_report_2024():
    import json

    frame = json.loads((DATA / "position_report_2024-09-17.json").read_text())
    kind, row = parse_aisstream_message(frame)
    assert kind == "position" and row["mmsi"] == 538010505
    assert row["time"] == pd.Timestamp("2024-09-17T14:38:55.281038479Z")
    assert row["lat"] == pytest.approx(13.351478333333334) and row["lon"] == pytest.approx(
        100.601575)


def test_nmea_samples_decode():
    t = read_ais_table(DATA / "sample.nmea")
    assert len(t.points) > 300
    assert 235070716 in set(t.points.mmsi)
    r = t.points.loc[t.points.mmsi == 235070716].iloc[0]
    assert r.lat == pytest.approx(36.910433, abs=1e-5) and r.lon == pytest.approx(20.760008,
                                                                                abs=1e-5)
    assert r.sog == pytest.approx(14.6) and r.heading == 157
    hub = read_ais_table(DATA / "aishub_sample.nmea")
    assert len(hub.points) >= 1


def test_marinecadastre_and_dma_layouts(tmp_path):
    mc = tmp_path / "mc.csv"
    mc.write_text("MMSI,BaseDateTime,LAT,LON,SOG,COG,Heading,VesselName,IMO,CallSign,"
                  "VesselType,Status,Length,Width,Draft,Cargo,TransceiverClass\n"
                  "367000001,2024-01-01T00:00:05,29.5,-94.1,10.2,45.0,511,TEST ONE,,,70,0,"
                  "180,30,9,70,A\n")
    p = read_ais_table(mc).points.iloc[0]
    assert (p.mmsi, p.ship_type, p.length, p.beam, p.ship_name) == (367000001, 70, 180, 30,
                                                                    "TEST ONE")
    assert np.isnan(p.heading)
    dma = tmp_path / "dma.csv"
    dma.write_text("# Timestamp,Type of mobile,MMSI,Latitude,Longitude,Navigational status,"
                   "ROT,SOG,COG,Heading,IMO,Callsign,Name,Ship type,Cargo type,Width,Length\n"
                   "02/03/2024 10:20:30,Class A,219000001,55.5,11.2,Under way,0,12,90,91,"
                   "Unknown,OX1,DANE,Cargo,,20,120\n")
    d = read_ais_table(dma).points.iloc[0]
    assert d.time == pd.Timestamp("2024-03-02T10:20:30Z")  # day first
    assert (d.length, d.beam, d.heading) == (120, 20, 91)


def test_bad_rows_are_recorded_not_fatal(tmp_path):
    df = pd.DataFrame({
        "mmsi": [224000001, 12345, 224000002, 224000003, 224000004, 224000005, 224000001],
        "lat": [36.0, 36.0, 91.0, np.nan, 0.0, 36.0, 36.0],
        "lon": [-5.0, -5.0, -5.0, -5.0, 0.0, 181.0, -5.0],
        "time": ["2026-09-30T10:00:00Z", "2026-09-30T10:00:00Z", "2026-09-30T10:00:00Z",
                 "2026-09-30T10:00:00Z", "2026-09-30T10:00:00Z", "2026-09-30T10:00:00Z",
                 "2026-09-30T10:00:00Z"],
    })
    df.loc[len(df)] = [224000006, 36.0, -5.0, "yesterday-ish"]
    df.loc[len(df)] = [224000007, 36.0, -5.0, "2099-01-01T00:00:00Z"]
    t = read_ais_table(df)
    assert list(t.points.mmsi) == [224000001]
    reasons = dict(zip(t.rejects.row, t.rejects.reason, strict=True))
    assert reasons[1].startswith("mmsi") and reasons[2].startswith("lat: outside")
    assert reasons[3].startswith("lat: missing") and "0/0" in reasons[4]
    assert reasons[5].startswith("lon: outside") and reasons[6] == "duplicate fix"
    assert reasons[7] == "time: cannot parse" and reasons[8] == "time: in the future"
    with pytest.raises(InputError, match=r"required column\(s\) \['lat'\]"):
        read_ais_table(pd.DataFrame({"mmsi": [1], "lon": [2]}))
    with pytest.raises(InputError, match="does not exist"):
        read_ais_table(tmp_path / "nope.csv")


def test_dma_ship_type_names_and_overpass_time_only(tmp_path):
    dma = tmp_path / "dma.csv"
    dma.write_text("# Timestamp,Type of mobile,MMSI,Latitude,Longitude,Navigational status,"
                   "ROT,SOG,COG,Heading,IMO,Callsign,Name,Ship type,Cargo type,Width,Length\n"
                   "13/03/2024 10:20:30,Class A,219000001,55.5,11.2,Under way,0,12,90,91,"
                   "Unknown,OX1,DANE ,Tanker,,20,120\n"
                   "13/03/2024 10:20:31,Class B,219000002,55.6,11.3,Unknown,,0,,,"
                   "Unknown,,,Undefined,,,\n")
    p = read_ais_table(dma).points.set_index("mmsi")
    assert p.loc[219000001, "ship_type"] == 80 and p.loc[219000001, "ship_name"] == "DANE"
    assert pd.isna(p.loc[219000002, "ship_type"])
    assert p.loc[219000001, "time"] == pd.Timestamp("2024-03-13T10:20:30Z")
    # a table without time: time is NaT, overpass_time kept (the chip job uses it)
    ov = pd.DataFrame({"MMSI": [224000001], "Latitude": [36.0], "Longitude": [-5.4],
                       "overpass_time": ["2026-09-30T10:56:00Z"]})
    table = read_ais_table(ov)
    t = table.points
    assert t.time.isna().all() and str(t.time.dtype) == "datetime64[ns, UTC]"
    assert t.overpass_time.iloc[0] == pd.Timestamp("2026-09-30T10:56:00Z")
    assert "geometry" not in t  # built on request only (~200 B per point)
    g = table.to_geodataframe()
    assert str(g.crs) == "EPSG:4326" and g.geometry.iloc[0].x == -5.4


def test_contract_dtypes_and_formats_round_trip(tmp_path):
    src = read_ais_table(DATA / "messages.jsonl").points
    assert src.mmsi.dtype == "int64" and str(src.time.dtype) == "datetime64[ns, UTC]"
    assert str(src.ship_type.dtype) == "Int64" and str(src.ship_name.dtype) == "string"
    for c in ("lat", "lon", "sog", "cog", "heading", "length", "beam"):
        assert src[c].dtype == "float64", c
    plain = pd.DataFrame(src)
    plain.to_parquet(tmp_path / "a.parquet")
    plain.assign(time=plain.time.dt.tz_localize(None)).to_excel(tmp_path / "a.xlsx",
                                                                 index=False)
    for name in ("a.parquet", "a.xlsx"):
        back = read_ais_table(tmp_path / name).points
        assert list(back.mmsi) == list(src.mmsi), name
        dt = np.abs(back.time.to_numpy() - src.time.to_numpy())
        assert (dt <= np.timedelta64(1, "ms")).all(), name  # Excel keeps milliseconds
    assert read_ais_table(DATA / "messages.jsonl").rejects.empty  # other types are not bad
    with pytest.raises(InputError, match="cannot be read"):
        (tmp_path / "bad.parquet").write_bytes(b"not parquet")
        read_ais_table(tmp_path / "bad.parquet")


def test_single_pretty_printed_frame_file():
    t = read_ais_table(DATA / "position_report_2024-09-17.json")
    (r,) = t.points.itertuples()
    assert (r.mmsi, r.ship_name) == (538010505, "SAWASDEE ALTAIR")
    assert r.time == pd.Timestamp("2024-09-17T14:38:55.281038479Z")
    assert r.time.microsecond == 281038  # (at least) millisecond precision


def test_nmea_bad_sentences_recorded_and_tag_block_time_used(tmp_path):
    lines = (DATA / "sample.nmea").read_bytes().splitlines()[:20]
    bad_checksum = lines[0][:-2] + b"00"
    tagged = b"\\s:2573535,c:1671620143*0B\\!AIVDM,1,1,,A,13HOI:0P0000VOHLCnHQKwvL05Ip,0*23"
    f = tmp_path / "mix.nmea"
    f.write_bytes(b"\r\n".join([bad_checksum, *lines[1:], tagged]) + b"\r\n")
    t = read_ais_table(f)
    assert "NMEA checksum mismatch" in set(t.rejects.reason)
    assert any(r.startswith("undecodable") for r in t.rejects.reason)  # empty payloads
    tag = t.points.loc[t.points.mmsi == 227006760].iloc[0]
    assert tag.time == pd.Timestamp(1671620143, unit="s", tz="UTC")
    assert len(t.points) >= 10
