"""AIS files in bounded memory: streamed in chunks, compact points, and an ops DB that keeps
only the fixes the chips depend on (the source file is referenced, not copied)."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pandas as pd
import pytest

from s2xr.ais import read_ais_table

DAY = pd.Timestamp("2026-09-30T10:00:00Z")


def table(n: int, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    t = DAY + pd.to_timedelta(np.arange(n) * 3.7, unit="s")
    return pd.DataFrame({
        "MMSI": (235_000_000 + rng.integers(0, max(n // 100, 3), n)).astype(str),
        "BaseDateTime": t.strftime("%Y-%m-%dT%H:%M:%S.%f"),
        "LAT": rng.uniform(35, 36, n).round(6), "LON": rng.uniform(-6, -5, n).round(6),
        "SOG": rng.uniform(0, 15, n).round(1), "COG": rng.uniform(0, 360, n).round(1),
        "Heading": rng.integers(0, 360, n), "VesselName": [f"SHIP {i % 97:03d}" for i in range(n)],
        "VesselType": 70, "Length": 120.0, "Width": 20.0, "Draft": 9.5, "Cargo": "70",
        "TransceiverClass": "A"})


def with_bad_rows(n: int = 50) -> pd.DataFrame:
    df = table(n)
    df.loc[3, "MMSI"] = "2.35e8"
    df.loc[17, "LAT"] = 95.0
    df.loc[18, "BaseDateTime"] = "not a time"
    df.loc[44, "MMSI"] = "123456789"
    df.loc[31] = df.loc[5]  # a duplicate fix far from its original (another chunk)
    return df


def test_csv_is_streamed_in_chunks_rows_counted_from_the_file_start(tmp_path):
    path = tmp_path / "ais.csv"
    with_bad_rows().to_csv(path, index=False)
    whole = read_ais_table(path)
    assert list(whole.rejects.row) == [3, 17, 18, 31, 44]
    assert list(whole.rejects.field) == ["mmsi", "lat", "time", "time", "mmsi"]
    assert whole.rejects.reason.iloc[3] == "duplicate fix"
    assert sorted(whole.points.index) == sorted(set(range(50)) - {3, 17, 18, 31, 44})
    for k in (1, 4, 7, 49):
        part = read_ais_table(path, chunk_rows=k)
        pd.testing.assert_frame_equal(part.points, whole.points)
        pd.testing.assert_frame_equal(part.rejects, whole.rejects)


def test_parquet_is_read_by_row_groups(tmp_path):
    import pyarrow.parquet as pq

    df = with_bad_rows()
    df.to_parquet(tmp_path / "ais.parquet", row_group_size=8, index=False)
    assert pq.ParquetFile(tmp_path / "ais.parquet").num_row_groups == 7
    ref = read_ais_table(df)
    for k in (3, 8, 1000):
        got = read_ais_table(tmp_path / "ais.parquet", chunk_rows=k)
        pd.testing.assert_frame_equal(got.points.drop(columns=["source", "provider"]),
                                      ref.points.drop(columns=["source", "provider"]))
        pd.testing.assert_frame_equal(got.rejects, ref.rejects)
    assert set(got.points.source) == {"ais.parquet"} and set(got.points.provider) == {"file"}


def test_points_are_compact_and_without_geometry(tmp_path):
    path = tmp_path / "ais.csv"
    table(5000).to_csv(path, index=False)
    t = read_ais_table(path)
    p = t.points
    assert "geometry" not in p and not any(dt == np.dtype(object) for dt in p.dtypes)
    for c in ("ship_name", "source", "provider"):
        assert str(p[c].dtype) == "string" and p[c].dtype.storage == "pyarrow", c
    assert p.memory_usage(deep=True).sum() / len(p) < 180  # bytes per point
    # unknown columns (Draft, Cargo, TransceiverClass) are not read at all
    assert not {"Draft", "Cargo", "TransceiverClass"} & set(p.columns)
    g = t.to_geodataframe()
    assert str(g.crs) == "EPSG:4326" and len(g) == len(p)


@pytest.mark.slow
def test_reading_a_csv_costs_about_the_points_plus_one_chunk(tmp_path):
    """Python-heap peak (tracemalloc: NumPy arrays and Python objects) while a 120,000-row
    CSV is read in 20,000-row chunks stays under twice the points' own size; reading the
    whole file at once (the old reader) peaked at ~6× here."""
    path = tmp_path / "ais.csv"
    table(120_000).to_csv(path, index=False)
    tracemalloc.start()
    try:
        t = read_ais_table(path, chunk_rows=20_000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    size = t.points.memory_usage(deep=True).sum()
    assert len(t.points) == 120_000
    assert peak < 2 * size, (peak / 2**20, size / 2**20)


def test_the_dataset_keeps_only_the_fixes_chips_depend_on(world, stac_server, tmp_path):
    from pipelines.chip_job import run_chip_job
    from s2xr.config import build_config
    from s2xr.ops import connect
    from s2xr.ops.observations import ObservationStore
    from s2xr.ops.prune import find_prunable
    from s2xr.store import read_index
    from s2xr.store.layout import DatasetLayout

    ais = pd.read_csv(world.ais_path)
    first = ais.loc[ais.mmsi == ais.mmsi.iloc[0]]
    far = first.assign(mmsi=235_999_999, lat=first.lat + 3.0)  # seen by no scene
    # every ship's track again 2 h earlier: still matched to its scenes (window ±6 h), but
    # no chip depends on those fixes
    early = ais.assign(time=(pd.to_datetime(ais.time) - pd.Timedelta(hours=2))
                       .dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
    every = pd.concat([ais, far, early], ignore_index=True)
    path = tmp_path / "ais.csv"
    every.to_csv(path, index=False)
    root = tmp_path / "out"
    cfg = build_config({"stac": {"api_url": stac_server.url, "collection": "sentinel-2-l2a",
                                 "window_hours": 6}, "storage": {"root": str(root)}},
                       environ={}, dotenv_path=None)
    res = run_chip_job(cfg, path)
    assert res.n_passed > 0
    layout = DatasetLayout.of(cfg)
    obs = ObservationStore(layout).read()
    with connect(layout.ops_db) as c:
        sources = pd.read_sql_query("SELECT DISTINCT ais_source FROM chip_jobs", c)
        assert c.execute("SELECT COUNT(*) FROM ais_observations").fetchone()[0] == 0
    assert list(sources.ais_source) == [str(path.resolve())]  # the file, referenced
    assert 0 < len(obs) < 0.55 * len(every)  # not every point copied
    assert 235_999_999 not in set(obs.mmsi)
    idx = read_index(root)
    assert set(idx.mmsi) <= set(obs.mmsi)
    # each stored fix is within 30 min of a sensing time of its ship (or brackets one)
    t = pd.to_datetime(obs.time, utc=True)
    sensing = pd.to_datetime(idx.scene_datetime, utc=True)
    near = np.zeros(len(obs), bool)
    for s in sensing.unique():
        near |= ((t - s).abs() <= pd.Timedelta(minutes=30)).to_numpy()
    assert near.all()
    # prune against the dataset's observations decides exactly as against the whole file
    full = read_ais_table(path).points
    for tol in (10, 30):
        a = find_prunable(idx, obs, time_tol_min=tol, dist_tol_m=500)
        b = find_prunable(idx, full, time_tol_min=tol, dist_tol_m=500)
        assert sorted(a.chip_id) == sorted(b.chip_id), tol


def test_positions_at_sensing_time_copy_no_track_frame():
    """position_at reads the columns it needs in place: no copy of a wide, long track
    frame and no Timestamp object per fix (the old code made two filtered copies)."""
    from s2xr.ais import position_at

    n = 200_000
    rng = np.random.default_rng(0)
    tracks = pd.DataFrame({
        "mmsi": 235_000_000 + rng.integers(0, 200, n),
        "time": DAY + pd.to_timedelta(rng.uniform(0, 7200, n), unit="s"),
        "lat": rng.uniform(35, 36, n), "lon": rng.uniform(-6, -5, n), "sog": 10.0,
        "cog": 90.0, **{f"x{i}": rng.random(n) for i in range(40)}})
    tracks.loc[::1000, "time"] = pd.NaT
    targets = pd.DataFrame({"mmsi": np.arange(235_000_000, 235_000_200),
                            "time": DAY + pd.Timedelta(hours=1)})
    size = tracks.memory_usage(deep=True).sum()
    tracemalloc.start()
    try:
        res = position_at(tracks, targets)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (res.method == "interpolated").all()
    assert peak < 0.6 * size, (peak / 2**20, size / 2**20)
