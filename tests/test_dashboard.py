"""The dashboard without a browser: the serve command's security rules, settings → run
options/config, upload validation, the shared job manager (one job at a time, stop, failure,
log tail, one instance for all sessions), the views on a real dataset, and a stop mid-run
that leaves the stores consistent."""

from __future__ import annotations

import logging
import re
import threading
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

pn = pytest.importorskip("panel")

from dashboards import gallery, plots, views  # noqa: E402
from dashboards.actions import (  # noqa: E402
    UploadCheck,
    prune,
    refusal_text,
    safe_upload_name,
    save_upload,
)
from dashboards.controls import (  # noqa: E402
    AIS_CAPTURE,
    AIS_SYNTHETIC,
    CONTINUOUS,
    RunSettings,
)
from dashboards.state import JobBusyError, JobManager, LogTail, get_manager  # noqa: E402
from pipelines.chip_job import run_chip_job  # noqa: E402
from pipelines.dashboard_cmd import (  # noqa: E402
    UPLOAD_CHUNK_BYTES,
    dashboard,
    is_local,
    panel_serve_args,
    websocket_max_message_bytes,
)
from pipelines.run_job import RunOptions  # noqa: E402
from s2xr.config import build_config  # noqa: E402
from s2xr.errors import ConfigError, InputError  # noqa: E402
from s2xr.ops.prune import PruneRefusedError  # noqa: E402
from s2xr.store import open_chips, read_index  # noqa: E402
from s2xr.store.layout import DatasetLayout  # noqa: E402


def embedded_cfg(root: Path, **sections: dict):
    data = {"stac": {"api_url": None, "collection": "sentinel-2-l2a", "window_hours": 6},
            "storage": {"root": str(root)}}
    for k, v in sections.items():
        data.setdefault(k, {}).update(v)
    return build_config(data, environ={}, dotenv_path=None)


# ----------------------------------------------------------------------------- security
def test_serve_args_bind_localhost_by_default(tmp_path):
    args = panel_serve_args(config_path=None, port=5999, address="127.0.0.1")
    assert args[0] == "serve" and args[1].endswith("dashboards/app.py")
    assert args[args.index("--address") + 1] == "127.0.0.1"
    assert "--basic-auth" not in args and "--oauth-provider" not in args
    assert "127.0.0.1:5999" in args
    assert is_local("::1") and is_local("127.0.0.5") and not is_local("0.0.0.0")


@pytest.mark.parametrize("address", ["0.0.0.0", "192.168.1.10", "example.org"])
def test_public_address_without_auth_is_refused(address):
    with pytest.raises(ConfigError, match="requires authentication"):
        panel_serve_args(config_path=None, port=5006, address=address)
    res = CliRunner().invoke(dashboard, ["--address", address])
    assert res.exit_code == 2
    assert "requires authentication" in res.output


def test_public_address_with_auth(tmp_path):
    pw = tmp_path / "users.json"
    pw.write_text('{"ops": "correct-horse-battery"}')
    args = panel_serve_args(config_path=None, port=5006, address="0.0.0.0",
                            basic_auth=str(pw), allow_websocket_origin=("ops.example:5006",))
    assert args[args.index("--basic-auth") + 1] == str(pw)
    secret = [a for a in args if a.startswith("--cookie-secret=")]
    assert len(secret) == 1 and len(secret[0].split("=", 1)[1]) >= 32
    assert "ops.example:5006" in args
    oauth = panel_serve_args(config_path=None, port=5006, address="0.0.0.0",
                             oauth_provider="github", oauth_key="k", oauth_secret="-s")
    assert any(a.startswith("--oauth-encryption-key=") for a in oauth)
    assert any(a.startswith("--cookie-secret=") for a in oauth)
    assert "--oauth-secret=-s" in oauth  # a value that begins with '-' stays a value


def test_secrets_that_begin_with_a_dash_reach_panel_as_values(tmp_path):
    """Panel's own parser reads every generated secret as the option's value (a random
    secret begins with '-' once in 64 starts; it used to be taken for an option)."""
    import argparse

    from panel.command.serve import Serve

    pw = tmp_path / "users.json"
    pw.write_text('{"ops": "correct-horse-battery"}')
    parser = argparse.ArgumentParser()
    Serve(parser=parser.add_subparsers().add_parser("serve"))  # panel serve's own options
    args = panel_serve_args(config_path=None, port=5006, address="0.0.0.0",
                            basic_auth=str(pw), cookie_secret="-starts-with-a-dash-" * 2)
    ns = parser.parse_args(args)
    assert ns.cookie_secret == "-starts-with-a-dash-" * 2
    with pytest.raises(ConfigError, match="oauth-key"):
        panel_serve_args(config_path=None, port=5006, address="0.0.0.0",
                         oauth_provider="github")
    with pytest.raises(ConfigError, match="not found"):
        panel_serve_args(config_path=None, port=5006, address="0.0.0.0",
                         basic_auth=str(tmp_path / "missing.txt"))


def test_websocket_limit_is_explicit_and_fits_an_upload_chunk():
    """Item 9: uploads travel in chunks, so the websocket limit is set from the chunk (not
    Bokeh's 20 MB default, not the file): any --max-upload-mb fits, none drops the session."""
    from dashboards.upload import AisUploader

    limits = set()
    for mb in (0.5, 3, 50, 2000):
        args = panel_serve_args(config_path=None, port=5006, address="127.0.0.1",
                                max_upload_mb=mb)
        limits.add(int(args[args.index("--websocket-max-message-size") + 1]))
    (limit,) = limits
    assert limit == websocket_max_message_bytes()
    chunk = AisUploader().chunk_size
    assert chunk == UPLOAD_CHUNK_BYTES and chunk * 4 / 3 < limit <= 8 * 2**20
    with pytest.raises(ConfigError, match="max-upload-mb"):
        panel_serve_args(config_path=None, port=5006, address="127.0.0.1", max_upload_mb=0)


# ----------------------------------------------------------------------------- settings
def test_settings_reproduce_the_config_and_the_run_flags(tmp_path):
    cfg = embedded_cfg(tmp_path, gate={"max_cloud": 0.1})
    s = RunSettings.from_config(cfg)
    assert s.config(cfg) == cfg  # unchanged settings → the same config
    assert s.options() == RunOptions(include_swir=True)  # = `s2xr run` without flags
    s.param.update(max_ships=5, bind_chips_to_ships=True, stac_max_cloud=40,
                   gate_enabled=False, gate_max_land=0.3, ais_source=AIS_SYNTHETIC)
    out = s.config(cfg)
    assert out.stac.max_cloud == 40 and not out.gate.enabled and out.gate.max_land == 0.3
    assert out.storage == cfg.storage
    assert s.options() == RunOptions(max_ships=5, bind_chips_to_ships=True,
                                     include_swir=True, dry_run_ais=True)
    s.check(cfg)  # synthetic AIS in Batch mode on the embedded world: fine
    s.mode = CONTINUOUS
    with pytest.raises(InputError, match="only for Batch"):
        s.check(cfg)
    real = build_config({"stac": {"api_url": "http://127.0.0.1:9"}}, environ={},
                        dotenv_path=None)
    s.mode = "Batch"
    with pytest.raises(InputError, match="embedded world"):
        s.check(real)


def test_settings_are_validated_like_a_file(tmp_path):
    cfg = embedded_cfg(tmp_path)
    s = RunSettings.from_config(cfg)
    with pytest.raises(ValueError):
        s.gate_max_cloud = 2.0  # param bounds
    s.stac_window_hours = 0.01
    assert s.config(cfg).stac.window_hours == 0.01


def test_settings_defaults_are_the_config_defaults():
    """The dashboard does not re-declare the gate/STAC/chip defaults: fresh settings applied
    to a default config leave it unchanged."""
    cfg = build_config({}, environ={}, dotenv_path=None)
    s = RunSettings()
    assert s.config(cfg) == cfg
    assert s.include_swir == cfg.chip.include_swir


# ----------------------------------------------------------------------------- upload
def test_upload_is_saved_and_validated(world, tmp_path):
    ais = pd.read_csv(world.ais_path)
    data = ais.head(200).to_csv(index=False).encode()
    ok = save_upload(tmp_path, "../../etc/ships.csv", data)
    assert ok.ok and ok.n_points == 200 and ok.path.parent == tmp_path / "ais" / "uploads"
    assert ok.path.name.endswith("-ships.csv") and ok.path.read_bytes() == data
    bad_rows = ais.head(20).copy()
    bad_rows.loc[:4, "lat"] = 123.0
    part = save_upload(tmp_path, "part.csv", bad_rows.to_csv(index=False).encode())
    assert part.ok and part.n_rejects == 5 and part.reasons
    wrong = save_upload(tmp_path, "x.csv", b"foo,bar\n1,2\n")
    assert not wrong.ok and "mmsi" in wrong.error
    assert "unsupported file type" in save_upload(tmp_path, "x.exe", b"MZ").error
    assert "empty" in save_upload(tmp_path, "x.csv", b"").error
    big = save_upload(tmp_path, "big.csv", b"x" * 2_100_000, max_mb=1)
    assert big.error == ("file is 2.1 MB; the upload limit is 1 MB; use `s2xr chip --ais "
                         "FILE` for large files") and big.path is None
    assert safe_upload_name("a b/../c$.xlsx") == "c_.xlsx"
    assert safe_upload_name("..") == "upload"


# ----------------------------------------------------------------------------- manager
def test_log_tail_is_bounded_and_sees_other_threads():
    tail = LogTail(maxlen=5)
    lg = logging.getLogger("s2xr.test_dashboard")
    lg.addHandler(tail)
    lg.setLevel(logging.INFO)
    try:
        t = threading.Thread(target=lambda: [lg.info("record %d", k) for k in range(12)])
        t.start()
        t.join()
    finally:
        lg.removeHandler(tail)
    lines = tail.lines()
    assert len(lines) == 5 and lines[-1].endswith("record 11") and tail.seq == 12


def test_manager_runs_one_job_at_a_time_and_stops(tmp_path):
    mgr = JobManager(embedded_cfg(tmp_path))
    try:
        assert mgr.status()["state"] == "idle"
        started = threading.Event()

        def wait_for_stop(control):
            control.set_stage("collect", "waiting")
            started.set()
            while not control.stopped:
                control.progress(1, 10)
                time.sleep(0.02)
            return "stopped cleanly"

        mgr.start("run", "a long job", wait_for_stop)
        assert started.wait(60)
        st = mgr.status()
        assert st["state"] == "running" and st["stage"] == "collect" and st["total"] == 10
        with pytest.raises(JobBusyError):
            mgr.start("run", "another", lambda c: None)
        assert mgr.stop()
        assert mgr.join(60)
        st = mgr.status()
        assert st["state"] == "stopped" and st["stage"] == "stopped"
        assert any("stop requested" in ln for ln in mgr.log_lines())

        def boom(control):
            control.set_stage("chip")
            raise InputError("planning.tiles: no tiles")

        mgr.start("run", "failing", boom)
        mgr.join(60)
        st = mgr.status()
        assert st["state"] == "failed" and "no tiles" in st["error"]
        assert any("failed" in ln for ln in mgr.log_lines())
        mgr.start("qa", "value", lambda c: 42)
        mgr.join(60)
        assert mgr.status()["state"] == "done" and mgr.result("qa") == 42
    finally:
        mgr.close()


def test_status_shows_counts_with_their_unit_and_an_eta():
    from dashboards import status
    from pipelines.run_types import RunControl

    control = RunControl()
    control.set_stage("chip", "3 window(s)")
    control.progress(2, 9, "searches")
    snap = control.snapshot()
    since = snap["since"]
    control.progress(3, 9, "searches")
    assert control.snapshot()["since"] == since  # the same count goes on
    control.progress(0, 111, "chips written")
    assert control.snapshot()["since"] >= since  # a new count starts
    st = {**control.snapshot(), "state": "running", "kind": "run", "elapsed_s": 12.0,
          "error": None, "result": None}
    st.update(done=37, since=1000.0)
    assert status.eta_s(st, now=1010.0) == pytest.approx(10.0 / 37 * 74)
    text = status.status_text({**st, "since": time.time() - 10})
    assert "37 / 111 chips written" in text and re.search(r"ETA 2\d s", text)  # ≈ 20 s
    assert status.eta_s({**st, "done": 0}) is None  # no rate before the first chip
    # a count first reported at 32 of 111 (one batch written before anything was timed):
    # the rate counts what was done since then, not the 32
    control.progress(0, 5, "searches")
    control.progress(32, 111, "chips written")
    snap = control.snapshot()
    assert snap["since_done"] == 32
    control.progress(64, 111, "chips written")
    st = {**st, **control.snapshot(), "since": 1000.0}
    assert status.eta_s(st, now=1010.0) == pytest.approx(10.0 / 32 * 47)
    assert status.eta_s({**st, "done": 32}) is None  # not moved yet: no rate
    assert status.eta_s({**st, "state": "done"}) is None
    assert [status.format_duration(s) for s in (42, 185, 3720)] == \
        ["42 s", "3 min 05 s", "1 h 02 min"]


def test_all_sessions_share_one_manager(tmp_path):
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(f"stac: {{api_url: null}}\nstorage: {{root: {tmp_path / 'ds'}}}\n")
    a = get_manager(cfg_path)
    b = get_manager(str(cfg_path))
    try:
        assert a is b and a.root == tmp_path / "ds"
    finally:
        a.close()
        pn.state.clear_caches()


# ----------------------------------------------------------------------------- views
@pytest.fixture(scope="module")
def chipped(world, stac_server, tmp_path_factory):
    """A dataset made by the chip job from the world's AIS (chips, index, ops DB)."""
    root = tmp_path_factory.mktemp("dash-views")
    cfg = build_config({"stac": {"api_url": stac_server.url, "collection": "sentinel-2-l2a",
                                 "window_hours": 6}, "storage": {"root": str(root)}},
                       environ={}, dotenv_path=None)
    res = run_chip_job(cfg, world.ais_path)
    assert res.n_passed > 0
    return root, cfg


def test_views_of_a_dataset(chipped):
    import holoviews as hv

    root, cfg = chipped
    idx = read_index(root)
    stores = views.Stores.of(cfg)
    assert stores.signature()[0] > 0
    items = gallery.gallery_items(root, idx, n=6)
    assert len(items) == min(6, int(idx.qa_pass.sum()))
    assert all(i["src"].startswith("data:image/jpeg;base64,") for i in items)
    table = views.table_frame(idx)
    assert len(table) == len(idx) and "geometry" not in table and table.qa_pass.dtype == bool
    plot = plots.footprints_plot(idx, ["30STE"])
    fig = hv.render(plot, backend="bokeh")
    assert fig.x_range.start < fig.x_range.end
    # a map people can read offline: lon/lat axes, the scene under the footprints, and one
    # marker (one tooltip) per pile of footprints
    assert type(fig.xaxis[0].formatter).__name__ == "MercatorTickFormatter"
    assert fig.xaxis[0].axis_label == "longitude"
    clusters = plots.chip_clusters(idx)
    assert clusters["n"].sum() == len(idx) and len(clusters) < len(idx)
    assert clusters["text"].str.contains("chip\\(s\\): ").all()
    from dashboards.scene_image import newest_scene, scene_underlay

    scene = scene_underlay(root, idx, px=256)
    assert scene is not None and scene["scene_id"] == newest_scene(idx)["scene_id"]
    rgba = scene["rgb"]
    assert rgba.shape[2] == 4 and rgba.dtype == np.uint8 and (rgba[..., 3] == 255).mean() > 0.5
    x0, y0, x1, y1 = scene["bounds"]
    cx = idx.geometry.to_crs(3857).centroid
    on = idx["scene_id"] == scene["scene_id"]
    assert ((cx.x[on] > x0) & (cx.x[on] < x1) & (cx.y[on] > y0) & (cx.y[on] < y1)).all()
    with_scene = hv.render(plots.footprints_plot(idx, ["30STE"], scene=scene))
    kinds = [type(r.glyph).__name__ for r in with_scene.renderers]
    assert kinds[0] == "ImageRGBA" and "Scatter" in kinds
    hovers = [t for t in with_scene.tools if type(t).__name__ == "HoverTool"]
    assert len(hovers) == 1  # only the markers: stacked footprints give one tooltip
    # one selection: a marker stands for a chip there (passed first), the selected chip is
    # outlined, and a click picks markers only
    for _, c in clusters.iterrows():
        near = idx.geometry.to_crs(3857).centroid.distance(
            gpd.points_from_xy([c.x], [c.y])[0])
        assert c.chip_id in set(idx.loc[near < 2560, "chip_id"])
        if c.n_passed:
            assert bool(idx.loc[idx.chip_id == c.chip_id, "qa_pass"].iloc[0])
    chip0 = str(idx.chip_id.iloc[0])
    mapf = plots.map_figure(plots.footprints_plot(idx, ["30STE"]), idx, chip0)
    assert list(mapf.markers.data["chip_id"]) == list(clusters.chip_id)
    xs = np.array(mapf.selected.data["xs"][0])
    cx = idx.geometry.to_crs(3857).centroid.iloc[0].x
    assert len(mapf.selected.data["xs"]) == 1 and xs.min() < cx < xs.max()
    assert plots.selected_xy(idx, "") == {"xs": [], "ys": []}
    # new data goes into the figure shown (the browser keeps its zoom) unless layers differ
    some = pd.concat([idx.loc[idx.qa_pass].head(2), idx.loc[~idx.qa_pass].head(2)])
    shown = plots.map_figure(plots.footprints_plot(some, ["30STE"]), some)
    assert plots.refresh_map(shown, mapf)
    assert list(shown.markers.data["chip_id"]) == list(clusters.chip_id)
    assert shown.selected.data["xs"] == mapf.selected.data["xs"]
    assert not plots.refresh_map(shown, plots.map_figure(plots.footprints_plot(
        idx, ["30STE"], basemap="OpenStreetMap.Mapnik"), idx))  # a basemap: rebuilt
    taps = [t for t in mapf.figure.tools if type(t).__name__ == "TapTool"]
    assert len(taps) == 1 and [r.data_source for r in taps[0].renderers] == [mapf.markers]
    with_tiles = hv.render(plots.footprints_plot(idx, ["30STE"],
                                                 basemap="OpenStreetMap.Mapnik"))
    assert any(type(r).__name__ == "TileRenderer" for r in with_tiles.renderers)
    assert not any(type(r).__name__ == "TileRenderer" for r in fig.renderers)
    chip = str(idx.loc[idx.qa_pass, "chip_id"].iloc[0])
    img = gallery.chip_images(root, chip)
    assert img is not None and img.rgb.startswith("data:image/png") and img.scl_counts
    row = idx.loc[idx.chip_id == chip].iloc[0]
    files = gallery.chip_files(root, row)
    assert set(files) == {"tif", "jpg", "json", "geojson"}
    assert gallery.chip_metadata(files)["chip_id"] == chip
    assert "qa_cloud_frac" in set(gallery.qa_table(row)["field"])
    rejected = idx.loc[~idx.qa_pass, "chip_id"]
    if len(rejected):
        assert gallery.chip_images(root, str(rejected.iloc[0])) is None
    ops = views.ops_tables(stores, cfg)
    assert ops["jobs"]["count"].sum() > 0 and len(ops["runs"]) >= 1


def test_schedule_timeline():
    sched = pd.DataFrame({
        "tile_id": ["30STE", "30STE", "30STF"], "satellite": ["S2A", "S2B", "S2A"],
        "start_time_utc": pd.to_datetime(["2026-09-30T10:55", "2026-10-05T10:55",
                                          "2026-09-30T10:56"], utc=True),
        "end_time_utc": pd.to_datetime(["2026-09-30T11:05", "2026-10-05T11:05",
                                        "2026-09-30T11:06"], utc=True),
        "source": "backfill"})
    wins = pd.DataFrame({"window_id": ["30STE|S2A|2026-09-30T10:55:00Z"],
                         "state": ["chipped"]})
    frame = views.schedule_frame(sched, wins)
    assert list(frame.state) == ["chipped", "scheduled", "scheduled"]
    fig = plots.schedule_plot(frame)
    assert set(fig.y_range.factors) == {"30STE · S2A", "30STE · S2B", "30STF · S2A"}
    empty = plots.schedule_plot(views.schedule_frame(sched.iloc[:0], None))
    assert list(empty.y_range.factors) == ["(no schedule yet)"]
    # explicit time ranges, empty or not: an auto range with no data is NaN in BokehJS,
    # which warns "could not set initial ranges"
    for f in (fig, empty):
        assert type(f.x_range).__name__ == "Range1d" and f.x_range.start < f.x_range.end
    assert fig.x_range.start <= frame.start_time_utc.min().tz_localize(None)
    assert fig.x_range.end >= frame.end_time_utc.max().tz_localize(None)


def test_prune_preview_then_prune(chipped, tmp_path):
    import shutil

    root0, cfg0 = chipped
    root = tmp_path / "copy"
    shutil.copytree(root0, root)
    cfg = build_config({**cfg0.model_dump(mode="json", exclude={"ais": {"api_key"}}),
                        "storage": {"root": str(root)}}, environ={}, dotenv_path=None)
    idx = read_index(root)
    keep = sorted(idx.mmsi.unique())[:3]
    obs_path = tmp_path / "few.csv"
    obs = pd.read_parquet(DatasetLayout(root).ais_observations)
    obs.loc[obs.mmsi.isin(keep)].to_csv(obs_path, index=False)
    preview = prune(cfg, time_tol_min=10, dist_tol_m=500, dry_run=True, upload=obs_path)
    assert len(preview) and set(preview.doomed.mmsi) == set(idx.mmsi) - set(keep)
    assert len(read_index(root)) == len(idx)  # a dry run removes nothing
    # most of the dataset: refused (the dashboard's words) unless forced
    assert preview.refusal and "Force" in refusal_text(preview)
    with pytest.raises(PruneRefusedError, match="tick “Force”"):
        prune(cfg, time_tol_min=10, dist_tol_m=500, dry_run=False, upload=obs_path)
    assert len(read_index(root)) == len(idx)
    done = prune(cfg, time_tol_min=10, dist_tol_m=500, dry_run=False, upload=obs_path,
                 force=True)
    assert set(done.doomed.chip_id) == set(preview.doomed.chip_id)
    assert done.area is not None and done.area.parent == root / "pruned"
    after = read_index(root)
    assert set(after.mmsi) <= set(keep)
    passed = set(after.loc[after.qa_pass, "chip_id"])
    assert set(open_chips(root / "chips.zarr").chip_id.values) == passed
    assert {p.stem for p in (root / "chips").rglob("*.tif")} == passed


def test_prune_view_shows_the_refusal_and_forces_only_explicitly(chipped, tmp_path):
    """Item 6 in the dashboard: the preview shows the guard's refusal; Prune does nothing
    until "Force" is ticked; then the chips go to pruned/ and the view says how to undo."""
    import shutil

    from dashboards.app import DashboardApp
    from dashboards.controls import OBS_UPLOAD

    root0, cfg0 = chipped
    root = tmp_path / "copy"
    shutil.copytree(root0, root)
    cfg = build_config({**cfg0.model_dump(mode="json", exclude={"ais": {"api_key"}}),
                        "storage": {"root": str(root)}}, environ={}, dotenv_path=None)
    idx = read_index(root)
    keep = sorted(idx.mmsi.unique())[:3]
    obs = pd.read_parquet(DatasetLayout(root).ais_observations)
    obs_path = tmp_path / "few.csv"
    obs.loc[obs.mmsi.isin(keep)].to_csv(obs_path, index=False)
    mgr = JobManager(cfg)
    try:
        app = DashboardApp(mgr)
        app._upload = UploadCheck(path=obs_path, filename="few.csv", n_bytes=1, n_points=1)
        app.prune_settings.observations = OBS_UPLOAD
        app._on_prune_preview()
        assert mgr.join(60)
        app._update_status()
        n = int((~idx.mmsi.isin(keep)).sum())
        assert f"dry run: **{n}** chip(s) would be removed" in app.prune_msg.object
        assert "a prune would be refused" in app.prune_msg.object
        assert "ops.prune_max_share (20 %)" in app.prune_msg.object
        assert app.w_force.visible and not app.w_force.value and app.b_prune.disabled
        app._on_prune()  # not forced: refused with the reason, nothing started
        assert "refusing to prune" in app.prune_msg.object
        assert mgr.result("prune") is None and len(read_index(root)) == len(idx)
        app.w_force.value = True  # explicitly
        assert not app.b_prune.disabled
        app._on_prune()
        assert mgr.join(120)
        app._update_status()
        assert f"removed {n} chip(s) from every store" in app.prune_msg.object
        assert "s2xr prune --undo pruned/" in app.prune_msg.object
        assert set(read_index(root).mmsi) <= set(keep)
        assert not app.w_force.value and not app.w_force.visible
    finally:
        mgr.close()


def test_upload_over_the_limit_gives_a_message_not_a_dropped_session(world, tmp_path):
    """Item 9: the upload widget refuses an oversize file in the browser (FilePond's
    max_file_size); chunks of one that arrive anyway are dropped with a clear message; a
    file within the limit arrives in chunks and is validated."""
    import asyncio

    from dashboards.app import DashboardApp

    cfg = embedded_cfg(tmp_path / "fresh")

    class Ev:
        event_name = "upload_event"

        def __init__(self, name, chunk, total, data):
            self.data = {"name": name, "chunk": chunk, "total_chunks": total,
                         "data": data, "type": "text/csv"}

    def send(widget, name, payload):
        size = widget.chunk_size
        total = -(-(len(payload) + 1) // size)  # as FilePond: ceil((size + 1) / chunk)
        for k in range(total):
            widget._process_event(Ev(name, k + 1, total, payload[k * size:(k + 1) * size]))

    mgr = JobManager(cfg)
    try:
        app = DashboardApp(mgr)
        up = app.w_upload
        assert isinstance(up, pn.widgets.FileDropper)  # chunked: no message above the limit
        assert up.max_file_size == "50000KB"  # the browser refuses more before sending
        up.max_mb = 1
        app.max_upload_mb = 1
        assert up.max_file_size == "1000KB"
        up.chunk_size = 400_000
        handled = []
        up.param.watch(lambda e: handled.append(e.new), "uploaded")
        send(up, "huge.csv", b"x" * 2_500_000)
        assert not handled and not up._file_buffer  # dropped, not kept in memory
        msg = app.upload_msg.object
        assert "Refused huge.csv: file is more than 2.4 MB; the upload limit is 1 MB; use " \
               "`s2xr chip --ais FILE` for large files" in msg, msg
        assert app.b_chip_upload.disabled
        # the browser's own refusal (FilePond, before sending) reaches the same message
        app.w_upload_refused.value = '["big.csv", 5000000, 1]'
        assert ("Refused big.csv: file is 5.0 MB; the upload limit is 1 MB; use `s2xr chip "
                "--ais FILE` for large files") in app.upload_msg.object
        good = Path(world.ais_path).read_bytes()[:600_000]
        good = good[:good.rindex(b"\n") + 1]
        send(up, "ships.csv", good)
        assert handled and handled[-1] == ("ships.csv", good)
        asyncio.run(app._on_upload(type("E", (), {"new": handled[-1]})()))
        assert "Accepted ships.csv" in app.upload_msg.object
        assert not app.b_chip_upload.disabled
        assert up.value == {}  # the bytes are not kept twice
    finally:
        mgr.close()


# ----------------------------------------------------------------------------- app
def test_app_builds_and_refuses_bad_starts(chipped):
    from dashboards.app import DashboardApp

    root, cfg = chipped
    mgr = JobManager(cfg)
    try:
        app = DashboardApp(mgr)
        assert len(app.gallery.items) == min(48, int(read_index(root).qa_pass.sum()))
        assert len(app.table.value) == len(read_index(root))
        assert "Real services" in app.world_md.object  # a config with a STAC API
        assert app.w_ais.disabled  # synthetic AIS only on the embedded world
        app.settings.ais_source = AIS_SYNTHETIC
        assert app.settings.ais_source == AIS_CAPTURE  # reset: not offered here
        release = threading.Event()
        mgr.start("qa", "a long job", lambda c: release.wait(10))
        app._on_start()  # one job at a time: refused with the reason, nothing started
        assert "a job is running" in app.run_msg.object
        release.set()
        mgr.join(60)
        row = read_index(root).iloc[0]
        layout = gallery.detail_layout(root, str(row.chip_id), row,
                                       gallery.chip_images(root, str(row.chip_id)))
        assert "Chip" in layout[0].object
        assert app.template() is not None
    finally:
        mgr.close()


def test_showing_the_index_tab_sends_its_rows_again(chipped):
    """Tabulator draws no rows that arrived while its tab was hidden (the browser test saw
    an empty index under load): showing the tab sends them again; other tabs do not."""
    from dashboards.app import DashboardApp

    _, cfg = chipped
    mgr = JobManager(cfg)
    try:
        app = DashboardApp(mgr)
        before = app.table.value
        app.tabs.active = app._tab_names.index("Map")
        assert app.table.value is before
        app.tabs.active = app._tab_names.index("Chip index")
        assert app.table.value is not before
        pd.testing.assert_frame_equal(app.table.value, before)
    finally:
        mgr.close()


def test_the_map_waits_for_its_tab_and_sessions_share_one_index_read(chipped, monkeypatch):
    """The map (the page's costliest model) is drawn when its tab is shown, not for every
    page load; the chip index is read once per version of the file for all sessions."""
    import os

    from dashboards.app import DashboardApp

    root, cfg = chipped
    reads: list[Path] = []
    real = views.read_index
    monkeypatch.setattr(views, "read_index", lambda r: reads.append(r) or real(r))
    views._INDEX_CACHE.clear()
    mgr = JobManager(cfg)
    try:
        first, second = DashboardApp(mgr), DashboardApp(mgr)
        assert len(reads) == 1  # two sessions, one read
        assert len(second.table.value) == len(real(root))
        assert first.map_pane.object is None and not first.map_empty.visible
        first.tabs.active = first._tab_names.index("Map")
        assert first.map_pane.object is not None  # drawn once shown
        shown = first.map_pane.object
        first._apply_map()  # new data: the same figure (the browser keeps its zoom)
        assert first.map_pane.object is shown
        first.basemap = "OpenStreetMap.Mapnik"  # another basemap: a new figure
        assert first.map_pane.object is not shown
        assert second.map_pane.object is None  # the other session's map is still hidden
        index = DatasetLayout(root).index
        st = index.stat()
        os.utime(index, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
        views.load_index(root)
        assert len(reads) == 2  # a new version of the file: read again
    finally:
        mgr.close()


def test_first_screen_offers_the_embedded_world(tmp_path):
    from dashboards.app import DashboardApp

    mgr = JobManager(embedded_cfg(tmp_path / "fresh"))
    try:
        app = DashboardApp(mgr)
        assert "not built yet" in app.world_md.object and app.b_world.visible
        assert app.gallery.items == [] and app.status_badge.object.count("idle")
        assert not app.w_ais.disabled
        app.settings.mode = CONTINUOUS
        assert app.w_ais.disabled and not app.w_interval.disabled
    finally:
        mgr.close()


# ----------------------------------------------------------------------------- stop
@pytest.mark.slow
def test_stop_mid_run_leaves_the_stores_consistent(tmp_path):
    """Stop requested while the run writes chips (the dashboard's Stop): the run ends
    ``stopped`` after the block being written, index == cube == files; the next run writes
    the remaining chips and the one after adds nothing."""
    import os

    from s2xr.config import DemoConfig
    from s2xr.demo import build_world

    small = {"window_px": 1024, "n_ships": 12, "n_scenes": 2}
    world = build_world(tmp_path / "world", DemoConfig(**small))
    root = tmp_path / "ds"
    root.mkdir()
    os.symlink(world.root, root / "world")
    cfg = embedded_cfg(root, demo=small, storage={"block_size": 4})
    mgr = JobManager(cfg)
    try:
        s = RunSettings.from_config(cfg)
        control = mgr.start_run(s.config(cfg), s.options())
        seen: list[tuple[str, int, int]] = []

        def stop_while_writing(snap):
            seen.append((snap["stage"], snap["done"], snap["total"]))
            if snap["stage"] == "chip" and snap["unit"] == "chips written" \
                    and 0 < snap["done"] < snap["total"] and not control.stopped:
                control.request_stop()

        control.subscribe(stop_while_writing)
        assert mgr.join(180)
        st = mgr.status()
        assert st["state"] == "stopped", (st, seen)
        assert control.stopped and any(s == "chip" and 0 < d < t for s, d, t in seen)
        idx = read_index(root)
        passed = set(idx.loc[idx.qa_pass, "chip_id"])
        assert passed and set(open_chips(root / "chips.zarr").chip_id.values) == passed
        assert {p.stem for p in (root / "chips").rglob("*.tif")} == passed
        assert not list(root.rglob("*.tmp"))
        # the stop took effect inside the chip stage: the re-run finishes the rest
        mgr.start_run(s.config(cfg), s.options())
        assert mgr.join(120) and mgr.status()["state"] == "done"
        again = read_index(root)
        assert set(idx.chip_id) < set(again.chip_id)
        full = set(again.loc[again.qa_pass, "chip_id"])
        assert set(open_chips(root / "chips.zarr").chip_id.values) == full
        assert {p.stem for p in (root / "chips").rglob("*.tif")} == full
        # and one more run adds nothing
        mgr.start_run(s.config(cfg), s.options())
        assert mgr.join(120) and mgr.status()["state"] == "done"
        assert set(read_index(root).chip_id) == set(again.chip_id)
    finally:
        mgr.close()


def test_qa_report_and_retry_actions(chipped, tmp_path):
    from dashboards.actions import qa_report, retry_due
    from pipelines.run_job import RunControl

    root, cfg = chipped
    out = qa_report(cfg, RunControl())
    assert out["path"].is_file() and out["n_chips"] == len(read_index(root))
    res = retry_due(cfg, 10, RunControl())
    assert res.summary() == "no job is due for a retry"


@pytest.mark.slow
def test_basic_auth_guards_the_app(tmp_path):
    """Served with --basic-auth, the app answers only after a login."""
    import urllib.request

    from dashboards.browser import DashboardServer

    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"stac: {{api_url: null}}\nstorage: {{root: {tmp_path / 'ds'}}}\n")
    users = tmp_path / "users.json"
    users.write_text('{"ops": "correct-horse-battery"}')
    with DashboardServer(cfg, log_path=tmp_path / "server.log",
                         extra_args=["--basic-auth", str(users)]) as server:
        with urllib.request.urlopen(server.url, timeout=10) as r:
            landed = r.geturl()
            page = r.read().decode(errors="replace")
        assert "/login" in landed and "s2xr-badge" not in page
