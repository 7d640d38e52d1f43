"""The dataset's AIS observations have one home, indexes/ais_observations.parquet; an older
dataset's ops DB rows are still read, and moved into it by the next chip job."""

from __future__ import annotations

import pandas as pd
import pytest

from s2xr.ais.storage import AisStore
from s2xr.errors import InputError
from s2xr.ops import connect
from s2xr.ops.observations import ObservationStore
from s2xr.ops.prune import load_observations
from s2xr.store.layout import DatasetLayout

T0 = pd.Timestamp("2026-10-01T10:30:00Z")


def fixes(mmsi: int, n: int, lat0: float = 35.6) -> pd.DataFrame:
    return pd.DataFrame({"mmsi": mmsi, "time": [T0 + pd.Timedelta(minutes=k) for k in range(n)],
                         "lat": [lat0 + 0.001 * k for k in range(n)], "lon": -5.7,
                         "sog": 10.0, "cog": 90.0, "provider": "test"})


def legacy_rows(layout: DatasetLayout, df: pd.DataFrame) -> None:
    """What a chip job of schema v1-v3 wrote into the ops DB."""
    with connect(layout.ops_db) as c, c:
        c.executemany("INSERT INTO ais_observations (mmsi, time, lat, lon, sog, cog, run_id) "
                      "VALUES (?, ?, ?, ?, ?, ?, 'old')",
                      [(int(r.mmsi), r.time.isoformat(), r.lat, r.lon, r.sog, r.cog)
                       for r in df.itertuples()])


def test_capture_and_chip_job_share_one_file(tmp_path):
    layout = DatasetLayout(tmp_path)
    store = AisStore(tmp_path, source="test")
    store.write_positions(fixes(235000001, 4))
    store.close()
    obs = ObservationStore(layout)
    assert store.index_path == layout.ais_observations
    assert obs.record(fixes(235000001, 6)) == 2  # the capture's four are already there
    assert obs.record(fixes(235000002, 3)) == 3
    got = obs.read()
    assert len(got) == 9 and set(got.mmsi) == {235000001, 235000002}
    assert not layout.ops_db.exists()  # reading never creates an ops DB


def test_chip_job_records_only_the_fixes_its_targets_rest_on(tmp_path):
    layout = DatasetLayout(tmp_path)
    points = pd.concat([fixes(235000001, 120), fixes(235000002, 5)], ignore_index=True)
    targets = pd.DataFrame({"mmsi": [235000001], "item_id": ["S2B_x"],
                            "time": [T0 + pd.Timedelta(minutes=60)], "target_key": ["t0"],
                            "row": [pd.NA]})
    n = ObservationStore(layout).record_for_targets(points, targets, window_s=600)
    got = ObservationStore(layout).read()
    assert n == len(got) == 21  # ±10 min around minute 60
    assert set(got.mmsi) == {235000001}


def test_an_older_datasets_ops_db_rows_are_read_then_moved(tmp_path):
    layout = DatasetLayout(tmp_path)
    with pytest.raises(InputError, match="no AIS observations"):
        load_observations(layout)
    legacy_rows(layout, fixes(235000003, 5))
    obs = ObservationStore(layout)
    assert obs.exists() and not layout.ais_observations.exists()
    before = load_observations(layout)
    assert len(before) == 5 and set(before.mmsi) == {235000003}
    assert obs.record(fixes(235000003, 2)) == 2  # new file; the DB rows still count once
    assert len(obs.read()) == 5
    assert obs.migrate_legacy() == 5
    with connect(layout.ops_db) as c:
        assert c.execute("SELECT COUNT(*) FROM ais_observations").fetchone()[0] == 0
    after = obs.read()
    assert len(after) == 5 and layout.ais_observations.is_file()
    pd.testing.assert_series_equal(after.sort_values("time").time.reset_index(drop=True),
                                   before.sort_values("time").time.reset_index(drop=True),
                                   check_dtype=False)
    assert obs.migrate_legacy() == 0
