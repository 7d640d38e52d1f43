"""The aisstream protocol: frames, validation counters, subscriptions, boxes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from s2xr.ais.aisstream import (
    CAPTURE_TYPES,
    Box,
    SubscriptionError,
    boxes_for_tiles,
    build_subscription,
    format_aisstream_time,
    parse_aisstream_time,
    validate_subscription,
)
from s2xr.ais.frames import FrameParser, parse_aisstream_message
from s2xr.ais.synthetic import (
    MALFORMED_KINDS,
    corrupt_frames,
    synthetic_tracks,
    to_aisstream_frames,
)
from s2xr.errors import InputError
from s2xr.grid import tile_footprint

DATA = Path(__file__).parent / "data" / "ais"
LINES = (DATA / "messages.jsonl").read_text().splitlines()


def by_type(mtype: str) -> dict:
    return next(json.loads(x) for x in LINES if json.loads(x)["MessageType"] == mtype)


def test_go_time_keeps_nanoseconds_and_round_trips():
    t = parse_aisstream_time("2023-10-15 09:51:08.143077274 +0000 UTC")
    assert t == pd.Timestamp("2023-10-15T09:51:08.143077274Z")
    # 8 fraction digits occur in real frames (Go drops trailing zeros)
    assert parse_aisstream_time("2023-10-15 09:51:08.29461965 +0000 UTC") == \
        pd.Timestamp("2023-10-15T09:51:08.294619650Z")
    assert format_aisstream_time(t) == "2023-10-15 09:51:08.143077274 +0000 UTC"


def test_every_real_frame_parses_to_the_right_fields():
    parser = FrameParser(max_future_s=1e12)
    kinds = {}
    for line in LINES:
        p = parser.parse(line, now=pd.Timestamp("2023-10-16", tz="UTC"))
        mtype = json.loads(line)["MessageType"]
        kinds[mtype] = p.kind if p else parser.last_skip
    assert kinds["PositionReport"] == kinds["StandardClassBPositionReport"] == \
        kinds["ExtendedClassBPositionReport"] == "position"
    assert kinds["ShipStaticData"] == kinds["StaticDataReport"] == "static"
    others = {k: v for k, v in kinds.items() if k not in CAPTURE_TYPES}
    assert len(others) == 15 and set(others.values()) == {"other_type"}
    assert parser.counts["position"] == 3 and parser.counts["static"] == 2

    _, r = parse_aisstream_message(by_type("PositionReport"))
    assert (r["mmsi"], r["ship_name"], r["sog"], r["cog"], r["heading"]) == \
        (538009327, "NORDIC QINNGUA", 4.2, 296.1, 307)
    assert r["time"] == pd.Timestamp("2023-10-15T09:51:08.143077274Z")
    assert (r["lat"], r["lon"]) == (51.967933333333335, 4.1139600000000005)
    _, b = parse_aisstream_message(by_type("StandardClassBPositionReport"))
    assert b["mmsi"] == 211306490 and b["ship_name"] == "CAMELOT" and np.isnan(b["heading"])
    _, s = parse_aisstream_message(by_type("ShipStaticData"))
    assert (s["mmsi"], s["ship_name"], s["call_sign"], s["ship_type"], s["length"],
            s["beam"], s["imo"], s["destination"]) == (244660640, "RVE 56", "PD2026", 99,
                                                       22, 5, None, "MAASVLAKTE")
    _, sd = parse_aisstream_message(by_type("StaticDataReport"))
    assert sd["part"] == "A" and sd["ship_name"] == "VIVID" and sd["ship_type"] is None
    _, ex = parse_aisstream_message(by_type("ExtendedClassBPositionReport"))
    assert ex["mmsi"] == 574222258 and ex["message_type"] == "ExtendedClassBPositionReport"


def test_parser_counts_every_kind_of_bad_frame_and_never_raises():
    pts = synthetic_tracks(5, "2026-09-30T10:00Z", "2026-09-30T10:02Z",
                           box=Box(35.5, -6, 36.5, -5), step_s=10, first_mmsi=235_000_001)
    good = to_aisstream_frames(pts)
    frames, kinds = corrupt_frames(good, len(MALFORMED_KINDS) * 2, seed=1)
    assert all(kinds.count(k) == 2 for k in MALFORMED_KINDS)
    frames += [good[3], good[3], "", "null", '{"MessageType": "PositionReport"}',
               json.dumps(by_type("BaseStationReport"))]
    parser = FrameParser()
    now = pd.Timestamp("2026-09-30T12:00Z")
    accepted = [p for f in frames if (p := parser.parse(f, now=now)) is not None]
    assert len(accepted) == len(good)  # every valid frame once, nothing else
    c = parser.counts
    assert c["frames"] == len(frames)
    assert c["malformed_json"] == 2 * 2 + 1  # truncated, not_json ×2, ""
    assert c["not_an_object"] == 2 + 1  # array ×2, null
    assert c["unknown_type"] == 2
    assert c["missing_field"] == 2 * 2 + 1  # missing_meta, missing_body ×2, no MetaData
    assert c["invalid_position"] == 3 * 2  # lat 91, lon 181, 0/0
    assert c["bad_mmsi"] == 2 and c["future_time"] == 2 and c["bad_time"] == 2
    assert c["duplicate"] == 2 and c["other_type"] == 1
    assert sum(parser.skipped.values()) == len(frames) - len(good)


def test_error_frame_is_reported():
    p = FrameParser().parse('{"error": "Api Key Is Not Valid"}')
    assert p.kind == "error" and p.error == "Api Key Is Not Valid"


def test_subscription_is_latitude_first_with_string_mmsis():
    box = Box(south=35.1, west=-6.3, north=36.2, east=-5.0)
    sub = build_subscription("k", [box], mmsi=[538009327, "211306490"])
    assert sub["BoundingBoxes"] == [[[35.1, -6.3], [36.2, -5.0]]]
    assert sub["FiltersShipMMSI"] == ["538009327", "211306490"]
    assert sub["FilterMessageTypes"] == list(CAPTURE_TYPES)
    v = validate_subscription(json.dumps(sub))
    assert v.boxes == (box,) and v.mmsi == {538009327, 211306490}
    # the real examples validate (tests/data/ais/subscription_example*.json)
    for name in ("subscription_example.json", "subscription_example_filtered.json"):
        validate_subscription((DATA / name).read_text())
    with pytest.raises(InputError, match="9 digits"):
        build_subscription("k", [box], mmsi=["12345"])
    with pytest.raises(InputError, match="API key"):
        build_subscription("", [box])


@pytest.mark.parametrize("sub, message", [
    ({"BoundingBoxes": [[[35, -6], [36, -5]]]}, "Api Key Is Not Valid"),
    ({"APIKey": "wrong", "BoundingBoxes": [[[35, -6], [36, -5]]]}, "Api Key Is Not Valid"),
    ({"APIKey": "k"}, "BoundingBoxes"),
    ({"APIKey": "k", "BoundingBoxes": [[[-180, -90], [180, 90]]]}, "latitude first"),
    ({"APIKey": "k", "BoundingBoxes": [[35, -6], [36, -5]]}, "must be"),
    ({"APIKey": "k", "BoundingBoxes": [[[35, -6], [36, -5]]], "FiltersShipMMSI": [538009327]},
     "9-character strings"),
    ({"APIKey": "k", "BoundingBoxes": [[[35, -6], [36, -5]]], "FilterMessageTypes": ["Foo"]},
     "FilterMessageTypes"),
])
def test_bad_subscriptions_are_refused_like_the_service(sub, message):
    with pytest.raises(SubscriptionError, match=message):
        validate_subscription(json.dumps(sub), valid_keys={"k"})


def test_boxes_for_tiles_cover_the_footprints():
    (b,) = boxes_for_tiles(["30STE"])
    w, s, e, n = tile_footprint("30STE").bounds
    assert (b.south, b.west, b.north, b.east) == pytest.approx((s, w, n, e), abs=1e-6)
    # a tile across the antimeridian gives two boxes, neither wraps
    parts = boxes_for_tiles(["1WCR"])
    assert len(parts) == 2 and all(p.west <= p.east for p in parts)
    assert {p.west for p in parts} | {p.east for p in parts} >= {180.0, -180.0}
    with pytest.raises(InputError, match="latitude first"):
        Box(south=-180, west=-90, north=180, east=90)
    assert Box.parse("35.5,-6.5,36.5,-5") == Box(35.5, -6.5, 36.5, -5.0)


def test_duplicate_memory_is_bounded():
    pts = synthetic_tracks(1, "2026-09-30T10:00Z", "2026-09-30T10:01Z",
                           box=Box(35.5, -6, 36.5, -5), step_s=10, first_mmsi=235_000_001)
    frames = to_aisstream_frames(pts, static=False)
    parser = FrameParser(max_seen=3)
    now = pd.Timestamp("2026-09-30T12:00Z")
    for f in frames + frames[-3:]:
        parser.parse(f, now=now)
    assert len(parser._seen) == 3 and parser.counts["duplicate"] == 3
    assert parser.parse(frames[0], now=now) is not None  # forgotten: the store dedups it


@pytest.mark.parametrize("frame", ["[" * 200_000 + "]" * 200_000,
                                   '{"a":' * 50_000 + "1" + "}" * 50_000],
                         ids=["deep_array", "deep_object"])
def test_parser_counts_json_nested_too_deep_to_decode(frame):
    """A frame nested deeper than the JSON decoder recurses is malformed, not a crash."""
    parser = FrameParser()
    assert parser.parse(frame) is None and parser.parse(frame.encode()) is None
    assert parser.counts["malformed_json"] == 2 and parser.last_skip == "malformed_json"
