"""Coming over from the predecessor (issue 14, item 4), on its own files (tests/data/predecessor):
its config.yaml converts (every key mapped or dropped with the reason) and the result chips
the embedded world; its AIS layouts (upload, snapshot CSV/Parquet/Excel, ops.db) and aisdb's
CSV chip the same ships as the s2xr CSV of the same fixes; ``s2xr prune --ais`` with them
removes nothing that matches; its ESA plan CSV without a satellite is read (the satellite told
by orbit, or asked for) and its schedule runs as a capture schedule."""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from pipelines.chip_job import run_chip_job
from pipelines.cli import main
from s2xr.ais import read_ais_table
from s2xr.ais.fixtime import fix_times
from s2xr.ais.schedule import capture_segments_from, read_schedule
from s2xr.ais.schema import canonical_columns
from s2xr.config import GateConfig, PlanningConfig, build_config, load_config
from s2xr.errors import InputError, PlanningError
from s2xr.migrate import migrate_config
from s2xr.ops.prune import find_prunable
from s2xr.planning import predict_overpasses, read_esa_plan
from s2xr.planning.esa_satellite import infer_satellites
from s2xr.planning.esa_tiles import esa_windows
from s2xr.planning.tle import bundled_tle_paths, parse_tle_text, predict_tle_passes, select_tles
from s2xr.store import read_index
from s2xr.store.layout import DatasetLayout

DATA = Path(__file__).parent / "data" / "predecessor"
ESA = Path(__file__).parent / "data" / "esa"
N_SHIPS = 6
# aisdb's CSV layout (the Spire / exactEarth export aisdb decodes: AISViz/AISdb
# aisdb_lib/src/csvreader.rs reads MMSI, Message_ID and Time by position, the rest as below;
# its test files carry 139 columns, these are the first 32)
AISDB_HEADER = [
    "MMSI", "Message_ID", "Repeat_indicator", "Time", "Millisecond", "Region", "Country",
    "Base_station", "Online_data", "Group_code", "Sequence_ID", "Channel", "Data_length",
    "Vessel_Name", "Call_sign", "IMO", "Ship_Type", "Dimension_to_Bow", "Dimension_to_stern",
    "Dimension_to_port", "Dimension_to_starboard", "Draught", "Destination", "AIS_version",
    "Navigational_status", "ROT", "SOG", "Accuracy", "Longitude", "Latitude", "COG",
    "Heading"]


def flat_keys(d: dict, prefix: str = "") -> list[str]:
    out = []
    for k, v in d.items():
        out += flat_keys(v, f"{prefix}{k}.") if isinstance(v, dict) and v else [f"{prefix}{k}"]
    return out


def iso(t: pd.Series) -> pd.Series:
    return t.map(lambda x: x.isoformat().replace("+00:00", "Z"))


# ------------------------------------------------------------------------------ the config
def test_every_old_key_is_mapped_or_dropped_with_a_reason(tmp_path):
    old = yaml.safe_load((DATA / "config.yaml").read_text())
    keys = flat_keys(old)
    m = migrate_config(DATA / "config.yaml")
    assert [e.old for e in m.entries] == keys and len(keys) == 61
    assert len(m.mapped) + len(m.dropped) == 61 and all(len(e.note) > 15 for e in m.dropped)
    text = m.to_yaml()
    assert all(k in text for k in keys)  # each old key named in the file (as a comment)
    (tmp_path / "s2xr.yaml").write_text(text)
    cfg = load_config(tmp_path / "s2xr.yaml", environ={}, dotenv_path=None)
    # what the predecessor's keys said, in s2xr's keys
    assert (cfg.planning.mode, cfg.planning.tiles, cfg.planning.prediction_days,
            cfg.planning.overpass_window_minutes) == ("auto", ("30SUJ",), 7, 5)
    assert cfg.planning.tle_path == old["satellite_tracking"]["tle_source"]
    assert (cfg.stac.api_url, cfg.stac.collection, cfg.stac.max_cloud, cfg.stac.window_hours
            ) == (old["stac"]["primary_endpoint"], "sentinel-2-l2a", 30, 24)
    assert (cfg.chip.size, cfg.chip.resolution, cfg.chip.resampling) == (256, 10, "cubic")
    assert cfg.chip.all_bands == ("blue", "green", "red", "nir", "swir16", "swir22")
    assert cfg.gate == GateConfig(enabled=True, centre_px=64, max_cloud=0.05, max_land=0.2,
                                  ndwi_threshold=0.05, min_water=0.5,
                                  cloud_includes_shadow=True)
    assert (cfg.ops.lag_days, cfg.ops.max_retries, cfg.ops.initial_backoff_min,
            cfg.ops.max_backoff_hours) == (3, 5, 5, 24)
    assert (cfg.splits.strategy, cfg.splits.train, cfg.splits.val, cfg.splits.test) == (
        "chip", 0.8, 0.1, 0.1)
    assert cfg.storage.root == Path("dataset_root") and cfg.storage.write_geotiff
    assert (cfg.ais.random_sampling_per_day, cfg.ais.flush_rows, cfg.ais.backoff_initial_s
            ) == (500, 500, 5)
    for e in m.mapped:  # every s2xr key named exists
        for key in e.new:
            section, name = key.split(".")
            assert name in type(getattr(cfg, section)).model_fields, key
    why = {e.old: e.note for e in m.dropped}
    assert "s2xr ops retry --limit 50" in why["ops.retry_batch_limit"]
    assert "--log-file logs/run.log" in why["logging.file"]
    assert "qa-report --alert-threshold 0.5" in why["alerts.threshold_fail_rate"]
    assert why["storage.layout.tiles_index"].endswith(str(DatasetLayout(Path()).index))
    assert "not found" in why["satellite_tracking.esa_csv_path"]  # not in its repo either
    assert "relaxed" in next(e.note for e in m.mapped if e.old == "stac.cloud_cover_max")


def test_values_s2xr_refuses_are_dropped_and_the_variants_mapped(tmp_path):
    old = yaml.safe_load((DATA / "config.yaml").read_text())
    st, tiling, masks = old["satellite_tracking"], old["tiling"], old["masks"]
    st["tiles"] = ["T30SUJ", "T99ZZZ", "31tcj"]
    st["prediction_days"] = 0
    (tmp_path / "plan").mkdir()
    (tmp_path / "plan" / "esa.csv").write_text("tile_id,start_time_utc,end_time_utc\n")
    st["esa_csv_path"] = "plan/esa.csv"  # relative to the old config's folder
    st["esa_download_url"] = "https://example.org/plan.csv"
    tiling.update(bands_core=["B02", "B8A", "B10"], bands_swir=["B11"],
                  resample_method="lanczos", write_cog=False)
    masks.update(derive_water_via_ndwi=False, scl_classes_exclude=["clouds", "snow"])
    old["ais"]["random_bounding_boxes"] = [[-6.0, 35.5, -5.0, 36.5]]
    old["ais"]["provider"] = "marinetraffic"
    old["alerts"]["webhook_url"] = "https://hooks.example.org/x"
    old["extra"] = {"knob": 1}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(old))
    m = migrate_config(path)
    got = {e.old: e for e in m.entries}
    cfg = build_config(m.data, environ={}, dotenv_path=None)
    assert cfg.planning.tiles == ("30SUJ", "31TCJ")
    assert "T99ZZZ" in got["satellite_tracking.tiles"].note
    assert got["satellite_tracking.prediction_days"].dropped
    assert "not valid in s2xr" in got["satellite_tracking.prediction_days"].note
    assert cfg.planning.prediction_days == PlanningConfig().prediction_days
    assert cfg.planning.esa_plan_path == str(tmp_path / "plan" / "esa.csv")
    assert cfg.planning.esa_plan_urls == ("https://example.org/plan.csv",)
    assert cfg.chip.bands == ("blue", "nir08", "swir16") and not cfg.chip.include_swir
    assert "B10" in got["tiling.bands_core"].note
    assert got["tiling.resample_method"].dropped and cfg.chip.resampling == "bilinear"
    assert not cfg.storage.write_geotiff
    assert cfg.gate.min_water == 0.0 and got["gate.min_water_center_frac"].dropped
    assert not cfg.gate.cloud_includes_shadow and "snow" in got["masks.scl_classes_exclude"].note
    assert cfg.ais.boxes == ((35.5, -6.0, 36.5, -5.0),)  # (south, west, north, east)
    assert "marinetraffic" in got["ais.provider"].note
    assert "--alert-url" in got["alerts.webhook_url"].note
    assert got["extra.knob"].dropped
    assert yaml.safe_load(m.to_yaml()) == m.data


def test_migrate_config_command(tmp_path):
    old_keys = flat_keys(yaml.safe_load((DATA / "config.yaml").read_text()))
    out = tmp_path / "s2xr.yaml"
    args = ["migrate-config", str(DATA / "config.yaml"), "-o", str(out)]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert all(k in res.output for k in old_keys)  # every key printed, mapped or dropped
    assert "33 key(s) mapped, 28 dropped" in res.output and "doctor" in res.output
    load_config(out, environ={}, dotenv_path=None)
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 2 and "--force" in again.output
    assert CliRunner().invoke(main, [*args, "--force"]).exit_code == 0
    printed = CliRunner().invoke(main, ["migrate-config", str(DATA / "config.yaml")])
    assert printed.exit_code == 0
    assert yaml.safe_load(printed.stdout) == yaml.safe_load(out.read_text())
    assert "storage.layout.chips: dropped" in printed.stderr
    same = CliRunner().invoke(main, ["migrate-config", str(out), "-o", str(out), "--force"])
    assert same.exit_code == 2 and "old config itself" in same.output


# ---------------------------------------------------------------- the same fixes, each layout
@pytest.fixture(scope="module")
def fixes(world) -> pd.DataFrame:
    """Ships of the world at one scene's sensing time (on water, clear), times to the whole
    second (aisdb's resolution): DataFrame[mmsi, lat, lon, time]."""
    truth = world.truth()
    item = truth["item_id"].iloc[0]
    ships = truth.loc[(truth.item_id == item) & (truth.placement == "water") &
                      ~truth.under_cloud.astype(bool)].head(N_SHIPS)
    assert len(ships) == N_SHIPS
    return pd.DataFrame({"mmsi": ships["mmsi"].astype("int64"), "lat": ships["lat"],
                         "lon": ships["lon"],
                         "time": pd.to_datetime(ships["sensing_time"], utc=True).dt.floor("s")
                         }).reset_index(drop=True)


def snapshot_rows(fixes: pd.DataFrame, tile: str) -> pd.DataFrame:
    """The predecessor's snapshot / ops.db rows (its ais_observations columns)."""
    t = iso(fixes["time"])
    return pd.DataFrame({
        "id": fixes["mmsi"].astype(str) + "|" + t + "|" + tile,
        "mmsi": fixes["mmsi"].astype(str), "lat": fixes["lat"], "lon": fixes["lon"],
        "tile_id": tile, "captured_time": t,
        "overpass_time": iso(fixes["time"].dt.floor("min")),  # the window, not the fix
        "source": "opportunistic", "provider": "aisstream", "status": "captured",
        "created_at": t})


def aisdb_rows(fixes: pd.DataFrame) -> pd.DataFrame:
    """One type-1 position report per fix, a type-5 static report for the first ship, a
    base station (type 4) and a report with a broken time, in aisdb's layout."""
    def row(**kw) -> dict:
        return {c: kw.get(c, "") for c in AISDB_HEADER}
    rows = [row(MMSI=str(r.mmsi), Message_ID="1", Repeat_indicator="0",
                Time=f"{r.time:%Y%m%d_%H%M%S}", Millisecond="0", Region="66", SOG="None",
                Longitude=repr(float(r.lon)), Latitude=repr(float(r.lat)), COG="None",
                Heading="None", Navigational_status="0") for r in fixes.itertuples()]
    first = fixes.iloc[0]
    rows.insert(1, row(MMSI=str(first.mmsi), Message_ID="5", Time=f"{first.time:%Y%m%d_%H%M%S}",
                       Vessel_Name="MIGRANT STAR        ", Call_sign="V7AB1  ", IMO="9436472.0",
                       Ship_Type="71.0", Dimension_to_Bow="182.0", Dimension_to_stern="49.0",
                       Dimension_to_port="24.0", Dimension_to_starboard="8.0"))
    rows.append(row(MMSI="3160123", Message_ID="4", Time="20210701_193654",
                    Longitude="-64.40047", Latitude="45.232945"))
    rows.append(row(MMSI=str(first.mmsi), Message_ID="1", Time="2021070_183245",
                    Longitude=repr(float(first.lon)), Latitude=repr(float(first.lat))))
    return pd.DataFrame(rows, columns=AISDB_HEADER)


@pytest.fixture(scope="module")
def layouts(fixes, world, tmp_path_factory) -> dict[str, Path]:
    """The same fixes written in each layout."""
    out = tmp_path_factory.mktemp("layouts")
    tile = f"T{world.tile}"
    paths = {"s2xr": out / "s2xr.csv", "upload": out / "upload.csv",
             "snapshot": out / "snapshot.csv", "parquet": out / f"ais_overpass_{tile}.parquet",
             "xlsx": out / f"ais_overpass_{tile}.xlsx", "ops.db": out / "ops.db",
             "aisdb": out / "aisdb_20260930.csv"}
    pd.DataFrame({"mmsi": fixes["mmsi"], "time": iso(fixes["time"]), "lat": fixes["lat"],
                  "lon": fixes["lon"]}).to_csv(paths["s2xr"], index=False)
    upload = pd.DataFrame({"mmsi": fixes["mmsi"], "lat": fixes["lat"], "lon": fixes["lon"],
                           "overpass_time": iso(fixes["time"])})
    assert list(upload.columns) == list(pd.read_csv(DATA / "upload_example.csv").columns)
    upload.to_csv(paths["upload"], index=False)
    snap = snapshot_rows(fixes, tile)
    assert list(snap.columns) == list(pd.read_csv(DATA / "ais_observations_rows.csv").columns)
    snap.to_csv(paths["snapshot"], index=False)
    # its collector's snapshot files: mmsi as text, no id/status columns
    parquet = snap[["mmsi", "lat", "lon", "tile_id", "overpass_time", "captured_time",
                    "source", "provider"]]
    parquet.to_parquet(paths["parquet"], index=False)
    parquet.to_excel(paths["xlsx"], index=False)
    shutil.copy(DATA / "ops.db", paths["ops.db"])  # its schema, its 50 rows replaced
    with sqlite3.connect(paths["ops.db"]) as conn:
        conn.execute("DELETE FROM ais_observations")
        cols = list(snap.columns)
        conn.executemany(f"INSERT INTO ais_observations ({', '.join(cols)}) VALUES "
                         f"({', '.join('?' * len(cols))})", snap.itertuples(index=False))
    conn.close()
    aisdb_rows(fixes).to_csv(paths["aisdb"], index=False, quoting=1)
    return paths


def chip_config(root: Path, url: str):
    return build_config({"stac": {"api_url": url, "collection": "sentinel-2-l2a",
                                  "window_hours": 6}, "storage": {"root": str(root)}},
                        environ={}, dotenv_path=None)


def test_every_layout_reads_as_the_same_fixes(layouts, fixes):
    want = fixes.sort_values("mmsi").reset_index(drop=True)
    for name, path in layouts.items():
        pts = fix_times(read_ais_table(path).points)
        got = pts[["mmsi", "lat", "lon", "time"]].sort_values("mmsi").reset_index(drop=True)
        pd.testing.assert_frame_equal(got, want, check_dtype=False, obj=name)
    aisdb = read_ais_table(layouts["aisdb"])
    first = aisdb.points.loc[aisdb.points.mmsi == fixes.mmsi.iloc[0]].iloc[0]
    assert (first.ship_name, first.ship_type, first.length, first.beam, first.imo) == (
        "MIGRANT STAR", 71, 231.0, 32.0, 9436472)  # the type-5 report, joined
    assert len(aisdb.rejects) == 1  # the broken time; the base station is not a position
    bad = aisdb.rejects.iloc[0]
    assert (bad.row, bad.field, bad.value) == (N_SHIPS + 2, "time", "2021070_183245")
    small = read_ais_table(layouts["aisdb"], chunk_rows=2)  # static rows in other chunks
    pd.testing.assert_frame_equal(small.points, aisdb.points)
    pd.testing.assert_frame_equal(small.rejects, aisdb.rejects)


@pytest.fixture(scope="module")
def chipped(layouts, stac_server, tmp_path_factory) -> dict[str, Path]:
    """A dataset chipped from each layout (the s2xr CSV is the reference)."""
    out = {}
    for name in ("s2xr", "upload", "snapshot", "ops.db", "aisdb"):
        root = tmp_path_factory.mktemp(f"chipped-{name.replace('.', '-')}")
        run_chip_job(chip_config(root, stac_server.url), layouts[name])
        out[name] = root
    return out


def chips_of(root: Path) -> set[tuple[str, int, bool]]:
    idx = read_index(root)
    return set(zip(idx.chip_id, idx.mmsi.astype(int), idx.qa_pass.astype(bool), strict=True))


@pytest.mark.parametrize("name", ["upload", "snapshot", "ops.db", "aisdb"])
def test_each_layout_chips_the_same_ships_as_the_s2xr_csv(chipped, fixes, name):
    ref = chips_of(chipped["s2xr"])
    assert {m for _, m, _ in ref} == set(fixes.mmsi)  # every ship chipped
    assert any(ok for *_, ok in ref)
    assert chips_of(chipped[name]) == ref  # same chip IDs, ships and gate results


def test_prune_with_the_predecessor_files_removes_nothing_that_matches(chipped, layouts,
                                                                      tmp_path):
    root = tmp_path / "ds"
    shutil.copytree(chipped["s2xr"], root)
    before = read_index(root)
    for name in ("upload", "snapshot", "parquet", "ops.db", "aisdb"):
        res = CliRunner().invoke(main, ["prune", "--out", str(root), "--ais",
                                        str(layouts[name])])
        assert res.exit_code == 0, (name, res.output)
        assert "removed 0 chip(s)" in res.output, (name, res.output)
    pd.testing.assert_frame_equal(read_index(root), before)


def test_migrated_config_chips_on_the_embedded_world(world, layouts, fixes, tmp_path):
    """``s2xr migrate-config`` then ``s2xr chip`` with the result, only the STAC API set to
    the embedded world (``S2XR_STAC__API_URL=`` → null), on the predecessor's upload."""
    cfg = tmp_path / "s2xr.yaml"
    res = CliRunner().invoke(main, ["migrate-config", str(DATA / "config.yaml"), "-o",
                                    str(cfg)])
    assert res.exit_code == 0, res.output
    root = tmp_path / "ds"
    root.mkdir()
    os.symlink(world.root, root / "world")  # the session's world (same demo section)
    res = CliRunner().invoke(main, ["chip", "--config", str(cfg), "--ais",
                                    str(layouts["upload"]), "--out", str(root)],
                             env={"S2XR_STAC__API_URL": ""})
    assert res.exit_code == 0, res.output
    idx = read_index(root)
    assert set(idx.mmsi) == set(fixes.mmsi) and idx.qa_pass.any()
    assert (idx.bands == "blue,green,red,nir,swir16,swir22").all() and idx.has_swir.all()
    assert (idx.split.isin(["train", "val", "test"])).all()
    assert (idx.cloud_cover <= 30).all()  # stac.max_cloud from cloud_cover_max


# --------------------------------------------------------------------- ops.db and aliases
def test_the_predecessors_ops_db_reads_as_ais_input(tmp_path):
    table = read_ais_table(DATA / "ops.db")
    assert table.points.empty and len(table.rejects) == 50
    # its rows are its dry-run's made-up ships: MMSIs 200000000-200000049 (MID 200 unassigned)
    assert (table.rejects.field == "mmsi").all()
    assert table.rejects.reason.str.contains("not a valid MMSI").all()
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE chip_jobs (chip_id TEXT)")
    conn.close()
    with pytest.raises(InputError, match=r"without a table 'ais_observations'.*chip_jobs"):
        read_ais_table(other)
    (tmp_path / "junk.db").write_text("not a database")
    with pytest.raises(InputError, match="not a readable SQLite database"):
        read_ais_table(tmp_path / "junk.db")
    res = CliRunner().invoke(main, ["chip", "--out", str(tmp_path / "ds"), "--ais",
                                    str(other)])
    assert res.exit_code == 2 and "ais_observations" in res.output
    assert "OperationalError" not in res.output


def test_time_and_its_aliases_give_one_time_column(tmp_path):
    """The rule: a column already named ``time`` wins over ``timestamp``/``captured_time``,
    whatever the order; without one, the first alias from the left wins."""
    t1, t2 = "2026-09-30T10:56:00Z", "2026-09-30T11:56:00Z"
    both = pd.DataFrame({"mmsi": [244660123], "captured_time": [t2], "lat": [36.1],
                         "lon": [-5.4], "time": [t1], "timestamp": [t2]})
    path = tmp_path / "both.csv"
    both.to_csv(path, index=False)
    for table in (read_ais_table(path), read_ais_table(both)):
        assert list(table.points.columns).count("time") == 1
        assert table.points["time"].iloc[0] == pd.Timestamp(t1) and table.rejects.empty
    canon = canonical_columns(both)
    assert list(canon.columns).count("time") == 1 and canon["time"].iloc[0] == t1
    first = both.drop(columns="time")  # captured_time is left of timestamp
    assert canonical_columns(first)["time"].iloc[0] == t2
    assert list(canonical_columns(first).columns).count("time") == 1
    idx = pd.DataFrame({"chip_id": ["0123456789abcdef"], "mmsi": [244660123], "lat": [36.1],
                        "lon": [-5.4], "scene_datetime": [pd.Timestamp(t1)]})
    assert find_prunable(idx, both, time_tol_min=10, dist_tol_m=500).empty


# -------------------------------------------------------------------------------- planning
def test_the_predecessors_schedule_runs_as_a_capture_schedule():
    sched = read_schedule(DATA / "overpass_schedule.csv")
    assert set(sched.tile_id) == {"30SUJ"} and len(sched) == 7
    segs = capture_segments_from(sched, now=pd.Timestamp("2025-10-23T00:00Z"))
    assert [s[2] for s in segs] == [("30SUJ",)] * 7
    assert all(b - a == pd.Timedelta(minutes=10) for a, b, _ in segs)


def test_esa_csv_without_satellite_is_told_apart_by_orbit(world, tmp_path):
    """The predecessor's ESA CSV layout (tile_id, start_time_utc, end_time_utc, no
    satellite) for the world's scenes: each row gets the scene's satellite, and the
    esa_plan schedule has their windows."""
    items = sorted(world.items(), key=lambda it: it["properties"]["datetime"])
    sensing = pd.to_datetime(pd.Series([it["properties"]["datetime"] for it in items]),
                             utc=True)
    sats = [it["properties"]["platform"].replace("sentinel-2", "S2").upper() for it in items]
    csv = tmp_path / "esa_acquisition_plan.csv"
    pd.DataFrame({"tile_id": f"T{world.tile}", "start_time_utc": iso(sensing - pd.Timedelta(
        minutes=5)), "end_time_utc": iso(sensing + pd.Timedelta(minutes=5))}).to_csv(
        csv, index=False)
    plan = read_esa_plan(csv)
    assert list(plan.segments["satellite"]) == sats and len(set(sats)) > 1
    sched = predict_overpasses([str(world.tile)], sensing.min().floor("D"), days=40,
                               cfg=PlanningConfig(mode="esa_plan", esa_plan_path=str(csv)))
    assert list(sched["satellite"]) == sats
    for t, row in zip(sensing, sched.itertuples(), strict=True):
        assert row.start_time_utc <= t <= row.end_time_utc
    named = tmp_path / "S2B_plan.csv"  # the file name says it: no orbit needed
    named.write_text(csv.read_text())
    assert set(read_esa_plan(named).segments["satellite"]) == {"S2B"}


def test_satellites_told_with_element_sets_months_apart():
    """Passes predicted with the October 2026 TLEs, told apart with April's (S2A, S2B only):
    every S2A/S2B row right, S2C rows unknown, never a wrong satellite."""
    new, old = (parse_tle_text(p.read_text(), p.name) for p in bundled_tle_paths())
    assert {s.satellite for s in old} == {"S2A", "S2B"}
    t0 = pd.Timestamp("2026-09-05T00:00Z")
    p = predict_tle_passes(["30SUJ", "30STE", "39QTA", "32TLT", "33UUP", "18TWL"], t0,
                           t0 + pd.Timedelta(days=20), select_tles(new, t0))
    rows = pd.DataFrame({"tile_id": p.tile_id,
                         "start_time_utc": p.sensing_start_utc - pd.Timedelta(minutes=5),
                         "end_time_utc": p.sensing_end_utc + pd.Timedelta(minutes=5)})
    got = infer_satellites(rows, old)
    known = p.satellite != "S2C"
    assert known.sum() > 40 and (got[known] == p.satellite[known]).all()
    assert got[~known].isna().all()


def test_a_plan_without_satellite_it_cannot_place_asks_for_one(tmp_path):
    # the predecessor's own schedule: backfill filler windows (10:25-10:35 UTC), no pass in them
    with pytest.raises(PlanningError, match=r"7 of 7 .*says \['S2'\].*add a satellite column"):
        read_esa_plan(DATA / "overpass_schedule.csv")
    # a real S2A plan of 2024 without its satellite: today's orbits would call it S2C (S2C
    # took S2A's slot in 2025), so no TLE that far from the date is used, and it asks
    plan = read_esa_plan(ESA / "S2A_acquisition_plan_trimmed.kml")
    w = esa_windows(plan, ["26SLJ", "19LGC", "16MCE", "43RFL"], *plan.coverage["S2A"])
    rows = pd.DataFrame({"tile_id": w.tile_id, "start_time_utc": w.sensing_start_utc,
                         "end_time_utc": w.sensing_end_utc})
    assert len(rows) == 4
    assert (infer_satellites(rows, max_age=pd.Timedelta(days=3650)) == "S2C").all()
    assert infer_satellites(rows).isna().all()
    csv = tmp_path / "plan.csv"
    rows.assign(start_time_utc=iso(rows.start_time_utc),
                end_time_utc=iso(rows.end_time_utc)).to_csv(csv, index=False)
    with pytest.raises(PlanningError, match=r"no TLE within 180 days.*S2A_acquisition_plan"):
        read_esa_plan(csv)


# ------------------------------------------------------------------------------------ docs
# the old CLI as its README documents it (tests/data/predecessor/README.md)
OLD_CLI = {"predict-overpasses": ["--mode", "--esa-csv", "--out"],
           "collect-ais": ["--schedule", "--window-min", "--dry-run/--no-dry-run",
                           "--restrict-to-schedule"],
           "run": ["--no-dry-run-ais", "--restrict-to-schedule", "--max-chips"],
           "qa-report": ["--out"], "ops-status": ["--db"],
           "ops-retry": ["--limit", "--include-swir"],
           "publish": ["--out-manifest", "--sample-limit"],
           "publish-stac": ["--out-dir", "--absolute-urls", "--base-url"],
           "doctor": ["--db"], "vacuum": ["--db", "--rm-empty"]}
OLD_INDEX = ["chip_id", "path", "mmsi", "lat", "lon", "overpass_time", "scene_id",
             "scene_datetime", "cloud_cover", "split", "bands", "has_swir", "qa_cloud_frac",
             "qa_water_frac", "qa_land_frac"]


def test_docs_map_every_old_key_command_flag_file_and_column():
    doc = (Path(__file__).parents[1] / "docs" / "migrating.md").read_text()
    old = yaml.safe_load((DATA / "config.yaml").read_text())
    missing = [k for k in flat_keys(old) if f"`{k}`" not in doc]
    for cmd, flags in OLD_CLI.items():
        rows = [ln for ln in doc.splitlines() if ln.startswith(f"| `{cmd}")]
        assert rows, cmd
        missing += [f"{cmd} {f}" for f in flags if f not in doc]
    section = doc.split("### `tiles.parquet` columns")[1].split("\n### ")[0]
    first_cells = " ".join(ln.split("|")[1] for ln in section.splitlines()
                           if ln.startswith("| `"))
    missing += [c for c in OLD_INDEX if f"`{c}`" not in first_cells]
    missing += [t for t in old["storage"]["layout"].values() if Path(t).name not in doc]
    for name in ("ais_overpass_{tile}.parquet", "ops.db", "manifests/dataset_manifest.json",
                 "logs/run.log", "plan/overpass_schedule.csv", "ais_observations"):
        if name not in doc:
            missing.append(name)
    assert not missing, missing
    assert "s2xr migrate-config" in doc and "20210701_185151" in doc
