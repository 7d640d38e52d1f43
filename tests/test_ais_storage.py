"""Capture storage (merge, never overwrite), random sampling, synthetic labelling, schedule."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from s2xr.ais import read_ais_table
from s2xr.ais.aisstream import Box
from s2xr.ais.sampling import DailySampler
from s2xr.ais.schedule import capture_segments_from, read_schedule
from s2xr.ais.storage import INDEX_PATH, AisStore, read_capture
from s2xr.ais.synthetic import synthetic_tracks
from s2xr.ais.tracks import static_table
from s2xr.errors import InputError

DAY = pd.Timestamp("2026-09-30T10:00Z")


def rows(mmsis, lon=-5.7, lat=35.6, t0=DAY, provider="aisstream"):
    return [{"mmsi": m, "time": t0 + pd.Timedelta(seconds=10 * i), "lat": lat + 0.001 * i,
             "lon": lon, "sog": 10.0, "cog": 90.0, "heading": 91.0,
             "message_type": "PositionReport", "provider": provider}
            for i, m in enumerate(mmsis)]


def test_same_day_captures_merge_and_never_overwrite(tmp_path):
    first = rows([224000001, 224000002, 224000003])
    store = AisStore(tmp_path, xlsx=True)
    static = static_table([{"mmsi": 224000001, "time": DAY, "ship_type": 70, "to_bow": 100,
                            "to_stern": 20, "to_port": 10, "to_starboard": 8,
                            "ship_name": "ALPHA ", "call_sign": "AB12"}])
    assert store.write_positions(first, static=static) == 3
    # a later capture of the same day: new rows added, repeated ones not doubled
    later = AisStore(tmp_path, xlsx=True)
    assert later.write_positions(first[:1] + rows([224000004], t0=DAY + pd.Timedelta(hours=1))
                                 ) == 1
    assert later.write_positions(first) == 0
    idx = pd.read_parquet(tmp_path / INDEX_PATH)
    assert sorted(idx.mmsi) == [224000001, 224000002, 224000003, 224000004]
    a = idx.set_index("mmsi").loc[224000001]
    assert (a.ship_type, a.length, a.beam, a.ship_name, a.call_sign) == (70, 120, 18, "ALPHA",
                                                                        "AB12")
    day = tmp_path / "ais" / "20260930"
    # (-5.7, 35.6) lies in 29SQV and 30STE: one file per tile, both complete
    for tile in ("29SQV", "30STE"):
        t = pd.read_parquet(day / f"ais_overpass_{tile}.parquet")
        assert len(t) == 4 and not t.duplicated(["mmsi", "time"]).any()
        assert len(pd.read_excel(day / f"ais_overpass_{tile}.xlsx")) == 4
    assert not list(tmp_path.rglob("*.tmp*"))  # temp files renamed away
    # the stored file reads back through the chip pipeline's reader
    table = read_ais_table(day / "ais_overpass_30STE.parquet")
    assert len(table.points) == 4 and table.rejects.empty
    assert table.points.time.dt.tz is not None and "tile_id" in table.points


def test_active_tiles_restrict_the_overpass_files(tmp_path):
    store = AisStore(tmp_path)
    store.write_positions(rows([224000001]) + rows([224000002], lon=12.6, lat=44.3),
                          tiles=("30STE",))
    day = tmp_path / "ais" / "20260930"
    assert sorted(p.name for p in day.glob("*.parquet")) == ["ais_outside_tiles.parquet",
                                                            "ais_overpass_30STE.parquet"]
    idx = pd.read_parquet(tmp_path / INDEX_PATH).set_index("mmsi")
    assert idx.loc[224000001, "tile_id"] == "30STE" and pd.isna(idx.loc[224000002, "tile_id"])


def test_static_records_merge_and_join_on_read(tmp_path):
    store = AisStore(tmp_path)
    store.write_positions(rows([224000001, 224000001]))
    st = [{"mmsi": 224000001, "time": DAY, "message_type": "StaticDataReport", "part": "A",
           "ship_name": "BRAVO"},
          {"mmsi": 224000001, "time": DAY + pd.Timedelta(seconds=1),
           "message_type": "StaticDataReport", "part": "B", "ship_type": 37, "to_bow": 8,
           "to_stern": 4, "to_port": 2, "to_starboard": 2}]
    assert store.write_static(st) == 2 and AisStore(tmp_path).write_static(st) == 0
    pts = read_capture(tmp_path).points
    assert (pts["ship_name"] == "BRAVO").all() and (pts["length"] == 12).all()
    assert (pts["ship_type"] == 37).all() and (pts["beam"] == 4).all()


def test_random_sample_is_uniform_capped_and_keeps_earlier_ships(tmp_path):
    # cap and all fixes of the chosen ships
    s = DailySampler(tmp_path, 5, seed=0)
    for r in rows(np.repeat(np.arange(224000001, 224000051), 3).tolist()):
        s.offer(r)
    s.write()
    sample = pd.read_parquet(tmp_path / "ais" / "20260930" / "ais_random_sample.parquet")
    assert sample.mmsi.nunique() == 5 and (sample.groupby("mmsi").size() == 3).all()
    # uniform over distinct MMSIs, whatever their order or how often they report
    hits = np.zeros(10)
    for seed in range(3000):
        d = DailySampler(tmp_path / "u", 3, seed=seed)
        for m in [0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9]:
            d.offer(rows([224000000 + m])[0])
        for m in d._days["20260930"].chosen:
            hits[m - 224000000] += 1
    assert np.allclose(hits / 3000, 0.3, atol=0.035), hits / 3000
    # a second capture the same day keeps the first one's ships and only fills free slots
    s2 = DailySampler(tmp_path, 7, seed=1)
    for r in rows(list(range(224000101, 224000141))):
        s2.offer(r)
    s2.write()
    again = pd.read_parquet(tmp_path / "ais" / "20260930" / "ais_random_sample.parquet")
    assert again.mmsi.nunique() == 7 and set(sample.mmsi) <= set(again.mmsi)


def test_synthetic_ais_is_labelled_everywhere(tmp_path):
    pts = synthetic_tracks(3, DAY, DAY + pd.Timedelta(minutes=2),
                           box=Box(35.4, -5.9, 35.8, -5.5), first_mmsi=235_000_001)
    assert set(pts.provider) == {"synthetic"}
    path = tmp_path / "synth.csv"
    pts.to_csv(path, index=False)
    assert set(read_ais_table(path).points.provider) == {"synthetic"}


def test_schedule_segments_follow_the_active_tiles():
    t = pd.Timestamp("2026-09-30T10:00Z")
    m = pd.Timedelta(minutes=1)
    sched = read_schedule(pd.DataFrame({
        "tile_id": ["T30STE", "33TUK", "19TCF", "30STE"],
        "start_time_utc": [t, t + 2 * m, t - 60 * m, t + 10 * m],
        "end_time_utc": [t + 5 * m, t + 6 * m, t - 50 * m, t + 11 * m]}))
    segs = capture_segments_from(sched, now=t + m)
    assert segs == [(t + m, t + 2 * m, ("30STE",)), (t + 2 * m, t + 5 * m, ("30STE", "33TUK")),
                    (t + 5 * m, t + 6 * m, ("33TUK",)), (t + 10 * m, t + 11 * m, ("30STE",))]
    assert capture_segments_from(sched, now=t + 20 * m) == []
    with pytest.raises(InputError, match="end_time_utc"):
        read_schedule(pd.DataFrame({"tile_id": ["30STE"], "start_time_utc": [t]}))
    with pytest.raises(InputError, match="not a time"):
        read_schedule(pd.DataFrame({"tile_id": ["30STE"], "start_time_utc": ["soon"],
                                    "end_time_utc": [t]}))


def test_text_that_cannot_be_utf8_is_stored_with_a_replacement_character(tmp_path):
    """A lone surrogate (a JSON "\\ud800" in a ship name or destination, in a position or in
    the static data joined onto it) is stored as U+FFFD instead of failing the write."""
    store = AisStore(tmp_path)
    pos = rows([224000001, 224000002])
    pos[0]["ship_name"] = "BAD \ud800 NAME"
    static = static_table([{"mmsi": 224000002, "time": DAY, "ship_name": "X\udfffY",
                            "call_sign": "AB12"}])
    assert store.write_positions(pos, static=static) == 2
    st = [{"mmsi": 224000001, "time": DAY, "message_type": "ShipStaticData",
           "destination": "\udc80PORT", "ship_name": "OK"}]
    assert store.write_static(st) == 1
    idx = pd.read_parquet(tmp_path / INDEX_PATH).set_index("mmsi")
    assert idx.loc[224000001, "ship_name"] == "BAD \ufffd NAME"
    assert idx.loc[224000002, "ship_name"] == "X\ufffdY"
    static_file = pd.read_parquet(tmp_path / "ais" / "20260930" / "ais_static.parquet")
    assert list(static_file.destination) == ["\ufffdPORT"]


def test_raw_log_keeps_every_frame_on_one_line_and_its_meaning(tmp_path):
    """Line separators inside a frame (U+2028, U+0085, \\r\\n) never split it in the raw
    JSONL log (readers use str.splitlines); a JSON frame reads back as the same object."""
    import json

    from s2xr.ais.storage import RawWriter

    objs = [{"MetaData": {"ShipName": "A\u2028B\u2029C"}}, {"x": "D\x85E"},
            {"y": "F\ud800G"}]
    frames = [json.dumps(objs[0], ensure_ascii=False), json.dumps(objs[1], ensure_ascii=False),
              json.dumps(objs[2]), '{"z":\r\n 1}', "not json\x0bat all\x0c", b"\xffbinary"]
    raw = RawWriter(tmp_path)
    for f in frames:
        raw.write(f, DAY)
    raw.write("lone \udc00 surrogate", DAY)
    raw.close()
    lines = (tmp_path / "ais" / "20260930" / "aisstream_raw.jsonl").read_text(
        encoding="utf-8").splitlines()
    assert len(lines) == len(frames) + 1
    assert [json.loads(ln) for ln in lines[:3]] == objs and json.loads(lines[3]) == {"z": 1}
    assert lines[-1] == "lone \\udc00 surrogate"
