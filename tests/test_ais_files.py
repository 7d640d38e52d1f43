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
