"""ITU-R M.1371 "not available" values, applied alike by every AIS source.

SOG raw 1023 (102.3 kn) = not available, raw 1022 (102.2 kn) = "102.2 kn or more" (valid,
kept); COG raw 3600 (360.0°) = not available; heading 511 = not available. The same fixes go
through each source path: aisstream frames (live FrameParser, JSON lines file), NMEA AIVDM
(pyais), CSV, Parquet and a DataFrame.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from s2xr.ais import FrameParser, normalize_points, parse_aisstream_message, read_ais_table
from s2xr.ais.sentinels import angle_value, angle_values, sog_value, sog_values

DATA = Path(__file__).parent / "data" / "ais"
NAN = math.nan
# (sog kn, cog deg, heading deg) as sent → as kept
CASES = [
    ((102.2, 359.9, 359), (102.2, 359.9, 359.0)),  # 102.2 = "102.2 kn or more": valid
    ((102.3, 360.0, 511), (NAN, NAN, NAN)),  # every field "not available"
    ((0.0, 0.0, 0), (0.0, 0.0, 0.0)),
    ((12.4, 360.0, 360), (12.4, NAN, NAN)),  # heading 360–510: not used
    ((102.3, 12.5, 511), (NAN, 12.5, NAN)),
]
MMSIS = [538009321 + i for i in range(len(CASES))]


def _expected() -> pd.DataFrame:
    return pd.DataFrame([c[1] for c in CASES], columns=["sog", "cog", "heading"])


def _kinematics(points: pd.DataFrame) -> pd.DataFrame:
    got = points.sort_values("mmsi").reset_index(drop=True)
    assert got["mmsi"].tolist() == MMSIS
    return got[["sog", "cog", "heading"]].astype(float)


def test_scalar_and_array_rules_agree():
    assert sog_value(102.2) == 102.2 and math.isnan(sog_value(102.3))
    assert math.isnan(sog_value(-0.1)) and math.isnan(sog_value(1023))
    assert angle_value(359.9) == 359.9 and math.isnan(angle_value(360.0))
    assert math.isnan(angle_value(511)) and math.isnan(angle_value(-1))
    v = np.array([102.2, 102.3, 0.0, -1.0, np.nan, 1022.0])
    np.testing.assert_array_equal(sog_values(v), [102.2, NAN, 0.0, NAN, NAN, NAN])
    np.testing.assert_array_equal(angle_values([0, 359.9, 360, 511, 3600]),
                                  [0, 359.9, NAN, NAN, NAN])


def _frames() -> list[dict]:
    """Real aisstream frames (tests/data/ais/messages.jsonl) with the kinematics swapped in:
    a PositionReport, a StandardClassBPositionReport and an ExtendedClassBPositionReport."""
    lines = (DATA / "messages.jsonl").read_text().splitlines()
    templates = [json.loads(line) for line in lines
                 if json.loads(line)["MessageType"] in ("PositionReport",
                                                        "StandardClassBPositionReport",
                                                        "ExtendedClassBPositionReport")]
    assert len(templates) == 3
    out = []
    for i, ((sog, cog, hdg), _) in enumerate(CASES):
        f = json.loads(json.dumps(templates[i % 3]))
        body = f["Message"][f["MessageType"]]
        body.update(Sog=sog, Cog=cog, TrueHeading=hdg, UserID=MMSIS[i])
        f["MetaData"].update(MMSI=MMSIS[i], MMSI_String=MMSIS[i])
        out.append(f)
    return out


def test_aisstream_frames():
    rows = [parse_aisstream_message(f)[1] for f in _frames()]
    pd.testing.assert_frame_equal(_kinematics(pd.DataFrame(rows)), _expected())


def test_live_capture_parser():
    parser = FrameParser(max_future_s=1e12)
    parsed = [parser.parse(json.dumps(f)) for f in _frames()]
    assert all(p is not None and p.kind == "position" for p in parsed)
    rows = pd.DataFrame([p.row for p in parsed if p is not None])
    pd.testing.assert_frame_equal(_kinematics(rows), _expected())


def test_aisstream_json_lines_file(tmp_path):
    path = tmp_path / "frames.jsonl"
    path.write_text("\n".join(json.dumps(f) for f in _frames()) + "\n")
    table = read_ais_table(path)
    assert table.rejects.empty
    pd.testing.assert_frame_equal(_kinematics(table.points), _expected())


def test_nmea_via_pyais(tmp_path):
    from pyais import encode_dict

    lines = []
    for i, ((sog, cog, hdg), _) in enumerate(CASES):  # class A (type 1) and B (type 18)
        msg = {"type": 1 if i % 2 else 18, "mmsi": MMSIS[i], "lat": 54.1 + i / 100,
               "lon": 10.7, "speed": sog, "course": cog, "heading": hdg}
        lines += encode_dict(msg, radio_channel="A", talker_id="AI",
                             sentence_type="VDM")
    path = tmp_path / "fixes.nmea"
    path.write_text("\r\n".join(lines) + "\r\n")
    table = read_ais_table(path)
    assert table.rejects.empty
    pd.testing.assert_frame_equal(_kinematics(table.points), _expected())


def _table() -> pd.DataFrame:
    return pd.DataFrame({
        "mmsi": MMSIS, "time": pd.date_range("2024-05-01T10:00Z", periods=len(CASES),
                                             freq="min").strftime("%Y-%m-%dT%H:%M:%SZ"),
        "lat": [54.1 + i / 100 for i in range(len(CASES))], "lon": 10.7,
        "sog": [c[0][0] for c in CASES], "cog": [c[0][1] for c in CASES],
        "heading": [c[0][2] for c in CASES]})


@pytest.mark.parametrize("fmt", ["csv", "parquet", "dataframe"])
def test_tables(tmp_path, fmt):
    df = _table()
    if fmt == "dataframe":
        table = normalize_points(df, source="<test>")
    else:
        path = tmp_path / f"fixes.{fmt}"
        df.to_csv(path, index=False) if fmt == "csv" else df.to_parquet(path)
        table = read_ais_table(path)
    assert table.rejects.empty
    pd.testing.assert_frame_equal(_kinematics(table.points), _expected())


def test_impossible_table_values_are_not_measurements():
    df = _table().iloc[:3].assign(sog=[-1.0, 1023.0, 150.0], cog=[-5.0, 3600.0, 409.5],
                                  heading=[-1, 511, 400])
    got = normalize_points(df, source="<test>").points
    assert got[["sog", "cog", "heading"]].isna().all().all()
