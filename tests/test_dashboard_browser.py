"""The dashboard in a real browser: Playwright driving Debian's Chromium against
``s2xr dashboard`` on 127.0.0.1, on a small embedded world.

One session runs a batch from the UI (status reaches done; same chips as ``s2xr run`` with
the same settings), browses quicklooks, a chip's detail and the map, uploads AIS files (a
bad one is refused with its reason, a good one is chipped), previews and runs a prune (the
stores stay consistent), and a second session sees and stops a continuous run. Screenshots
go to ``$S2XR_TEST_ARTIFACTS`` (default: the test's tmp dir)."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import zipfile
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

pytest.importorskip("panel")
pytest.importorskip("playwright")

from dashboards.browser import CHROMIUM, DashboardPage, DashboardServer, chromium
from pipelines.cli import main
from s2xr.config import DemoConfig
from s2xr.store import open_chips, read_index

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                 reason=f"{CHROMIUM} missing (apt-get install chromium)")]

SMALL_WORLD = {"window_px": 1024, "n_ships": 12, "n_scenes": 2}


def consistent(root: Path) -> set[str]:
    """Index (passed) == cube == .tif files; no temp files. Returns the passed chip ids."""
    idx = read_index(root)
    passed = set(idx.loc[idx.qa_pass, "chip_id"])
    raw = root / "chips.zarr"  # every chip stored, committed or not
    cube = set(open_chips(raw).chip_id.values) if raw.exists() else set()
    assert cube == passed
    assert {p.stem for p in (root / "chips").rglob("*.tif")} == passed
    assert not list(root.rglob("*.tmp")) and idx.chip_id.is_unique
    return passed


def write_config(tmp: Path, name: str, world_root: Path) -> tuple[Path, Path]:
    """configs/demo.yaml with a small world and its own dataset root (world symlinked)."""
    data = yaml.safe_load(Path("configs/demo.yaml").read_text())
    root = tmp / name
    root.mkdir(parents=True)
    os.symlink(world_root, root / "world")
    data["storage"]["root"] = str(root)
    data["demo"].update(SMALL_WORLD)
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path, root


@pytest.fixture(scope="module")
def small_world(tmp_path_factory):
    from s2xr.demo import build_world

    base = yaml.safe_load(Path("configs/demo.yaml").read_text())["demo"]
    cfg = DemoConfig(**{**base, **SMALL_WORLD})
    return build_world(tmp_path_factory.mktemp("small-world"), cfg)


@pytest.fixture
def artifacts(tmp_path) -> Path:
    out = Path(os.environ.get("S2XR_TEST_ARTIFACTS") or tmp_path / "artifacts")
    out.mkdir(parents=True, exist_ok=True)
    return out


def test_dashboard_in_a_browser(small_world, tmp_path, artifacts):
    cfg_path, root = write_config(tmp_path, "ui", small_world.root)
    # the reference: `s2xr run` with the same config and no flags (the UI's defaults); run
    # before the browser, whose sync API holds an event loop in this thread
    ref_cfg, ref_root = write_config(tmp_path, "cli", small_world.root)
    res = CliRunner().invoke(main, ["run", "--config", str(ref_cfg)])
    assert res.exit_code == 0, res.output
    with DashboardServer(cfg_path, log_path=artifacts / "dashboard-server.log") as server, \
            chromium() as browser:
        page = DashboardPage(browser.new_page(viewport={"width": 1440, "height": 900}))
        page.open(server.url)
        # -- the first screen: idle, the embedded world, nothing chipped yet
        assert page.state() == "idle"
        start = page.button("▶ Start").bounding_box()  # no scrolling needed
        assert start is not None and start["y"] + start["height"] <= 900, start
        page.wait_for(lambda: "Embedded offline world" in page.text(".s2xr-dataset"),
                      timeout_s=10, what="the world card")
        assert "synthetic" in page.text(".s2xr-dataset")
        page.shot(artifacts / "01_first_screen.png")

        # -- a batch from the UI: running (stage, progress) → done
        page.click("▶ Start")
        page.wait_state("running", "done", timeout_s=15)
        page.wait_for(lambda: page.stage() in ("collect", "lag", "chip", "done"),
                      timeout_s=60, what="a run stage")
        # counts with their unit while it runs (AIS replayed, searches, chips written)
        page.wait_for(lambda: re.search(r"\d+ / \d+ (AIS messages|searches|chips written)",
                                        page.text(".s2xr-status")),
                      timeout_s=120, what="a count while the run progresses")
        page.shot(artifacts / "02_running.png")
        assert page.wait_state("done", "failed", timeout_s=600) == "done", \
            page.text(".s2xr-status")
        assert "new chip(s) passed" in page.text(".s2xr-status")
        ui_chips = consistent(root)
        assert ui_chips
        log_text = page.text(".s2xr-logtail")
        assert "stage chip" in log_text and "replay" in log_text  # the run's own records

        # -- same chips as `s2xr run` with the same settings
        assert set(read_index(ref_root).chip_id) == set(read_index(root).chip_id)
        assert consistent(ref_root) == ui_chips

        # -- gallery → chip detail; the map
        page.wait_for(lambda: page.page.locator("figure.qg-item").count() == len(ui_chips),
                      timeout_s=60, what="one quicklook per passed chip")
        page.page.locator("figure.qg-item").first.click()
        page.page.locator(".s2xr-detail-images img").first.wait_for(timeout=60_000)
        detail = page.text(".s2xr-detail")
        assert "qa_cloud_frac" in detail and "Files:" in detail
        assert page.page.locator(".s2xr-detail-images img").count() == 3  # RGB, NIR, SCL
        page.shot(artifacts / "03_gallery_detail.png")
        page.tab("Map")
        page.page.locator(".s2xr-map canvas").first.wait_for(timeout=60_000)
        # lon/lat axes, the scene under the footprints, one marker layer with the tooltips
        page.wait_for(lambda: page.bokeh_models("ImageRGBA") >= 1, timeout_s=60,
                      what="the scene image under the footprints")
        assert page.bokeh_models("MercatorTickFormatter") >= 2
        assert page.bokeh_models("HoverTool") >= 1
        # hovering the marker of the biggest pile of footprints: one tooltip names them all
        page.page.locator(".s2xr-map").first.scroll_into_view_if_needed()
        mark = page.wait_for(page.busiest_marker, timeout_s=30, what="the map's markers")
        here = gpd.GeoSeries(gpd.points_from_xy([mark["mx"]], [mark["my"]]),
                             crs="EPSG:3857").to_crs(4326).iloc[0]
        under = int(read_index(root).geometry.contains(here).sum())
        assert under >= 2 and mark["n"] >= 2, (under, mark)  # footprints stacked there
        page.page.mouse.move(mark["x"], mark["y"])
        tips = page.wait_for(page.tooltips, timeout_s=15, what="the marker's tooltip")
        assert len(tips) == 1 and f"{mark['n']} chip(s)" in tips[0], tips
        page.shot(artifacts / "04_map.png")
        # a click on it selects its chip: the detail shows it, the map outlines it
        idx3857 = read_index(root).assign(c=lambda d: d.geometry.to_crs(3857).centroid)
        page.page.mouse.click(mark["x"], mark["y"])
        outlined = page.wait_for(lambda: [c for c in page.selected_on_map()
                                          if abs(c[0] - mark["mx"]) < 3000], timeout_s=30,
                                 what="the clicked marker's chip outlined")
        picked = idx3857.loc[idx3857.c.distance(
            gpd.points_from_xy([outlined[0][0]], [outlined[0][1]])[0]) < 50, "chip_id"]
        assert len(picked) == 1, picked
        page.wait_for(lambda: picked.iloc[0] in page.text(".s2xr-detail"), timeout_s=30,
                      what="the clicked marker's chip in the detail")
        page.tab("Chip index")
        page.wait_for(lambda: page.page.locator(".s2xr-table .tabulator-row").count() > 0,
                      timeout_s=60, what="index rows")
        # -- downloads: files a user opens with geopandas, pandas, json and zipfile
        dl = tmp_path / "downloads"
        got = gpd.read_parquet(page.download("Index (GeoParquet)", dl))
        assert set(got.chip_id) == set(read_index(root).chip_id)
        assert list(pd.read_csv(page.download("Index (CSV)", dl)).chip_id) == list(got.chip_id)
        with zipfile.ZipFile(page.download("Labels (COCO zip)", dl)) as z:
            coco = [json.loads(z.read(n)) for n in z.namelist() if n.endswith(".json")]
        assert sum(len(c["images"]) for c in coco) == len(ui_chips)
        with zipfile.ZipFile(page.download("Labels (YOLO-OBB zip)", dl)) as z:
            assert sum(n.endswith(".jpg") for n in z.namelist()) == len(ui_chips)
        with zipfile.ZipFile(page.download("STAC catalog (zip)", dl)) as z:
            assert "stac/catalog.json" in z.namelist()
        page.click("passed", exact=True)  # the QA filter: the zip holds what the table shows
        page.wait_for(lambda: page.page.locator(".s2xr-table .tabulator-row").count()
                      == min(len(ui_chips), 15), timeout_s=30, what="passed rows only")
        with zipfile.ZipFile(page.download("Chips shown (zip)", dl)) as z:
            shown = gpd.read_parquet(io.BytesIO(z.read("index.parquet")))
            tifs = {n.rsplit("/", 1)[1][:-4] for n in z.namelist() if n.endswith(".tif")}
        assert set(shown.chip_id) == ui_chips == tifs
        # header filters (the scene's date, the split) narrow the table and what the zip holds
        idx = read_index(root)
        day = pd.to_datetime(idx.scene_datetime, utc=True).dt.strftime("%Y-%m-%d")
        first_day = sorted(day.unique())[0]
        want = set(idx.loc[(day == first_day) & (idx.split == "train") & idx.qa_pass,
                           "chip_id"])
        assert 0 < len(want) < len(ui_chips)

        def header_filter(field: str) -> Any:
            return page.page.locator(f".s2xr-table .tabulator-col[tabulator-field={field}] "
                                     "input").first

        assert header_filter("scene_datetime").get_attribute("placeholder") == "YYYY-MM-DD"
        for field, text in (("scene_datetime", first_day), ("split", "train")):
            header_filter(field).fill(text)
            header_filter(field).press("Enter")  # Tabulator filters on key events
        page.wait_for(lambda: page.page.locator(".s2xr-table .tabulator-row").count()
                      == min(len(want), 15), timeout_s=30, what=f"{len(want)} rows")
        with zipfile.ZipFile(page.download("Chips shown (zip)", dl)) as z:
            assert set(gpd.read_parquet(io.BytesIO(z.read("index.parquet"))).chip_id) == want
        page.shot(artifacts / "04c_index_filtered.png")
        for field in ("scene_datetime", "split"):
            header_filter(field).fill("")
            header_filter(field).press("Enter")
        page.wait_for(lambda: page.page.locator(".s2xr-table .tabulator-row").count()
                      == min(len(ui_chips), 15), timeout_s=30, what="the filters cleared")
        # -- one selection: a row clicked in the index is the chip the gallery highlights
        row = page.page.locator(".s2xr-table .tabulator-row").nth(1)
        cell = row.locator("[tabulator-field=chip_id]")
        clicked = cell.inner_text().strip()
        assert clicked in ui_chips
        cell.click()
        page.tab("Gallery")
        page.wait_for(lambda: clicked in page.text(".s2xr-detail"), timeout_s=60,
                      what="the clicked row's detail")
        page.wait_for(lambda: page.page.locator("figure.qg-sel").count() == 1 and
                      page.page.locator("figure.qg-sel").get_attribute("data-chip-id")
                      == clicked, timeout_s=30,
                      what=f"the clicked row's quicklook {clicked} highlighted: "
                           f"{page.page.locator('figure.qg-item').count()} shown, "
                           f"{page.page.locator('figure.qg-sel').count()} highlighted")
        page.tab("Map")  # ... and the map outlines it
        centre = idx3857.loc[idx3857.chip_id == clicked, "c"].iloc[0]
        page.wait_for(lambda: [c for c in page.selected_on_map()
                               if abs(c[0] - centre.x) < 50 and abs(c[1] - centre.y) < 50],
                      timeout_s=30, what=f"{clicked} outlined on the map")
        page.tab("Chip index")
        page.click("all", exact=True)
        page.shot(artifacts / "04b_index_downloads.png")
        page.tab("Schedule")
        page.shot(artifacts / "05_schedule.png")
        page.tab("Gallery")

        # -- upload: a bad file is refused with its reason, a good one is chipped
        bad = tmp_path / "bad.csv"
        bad.write_text("foo,bar\n1,2\n")
        page.upload(bad)
        page.wait_for(lambda: "Refused" in page.text(".s2xr-upload-msg"), timeout_s=30,
                      what="the upload error")
        assert "required column" in page.text(".s2xr-upload-msg")
        assert page.button("Chip this file").is_disabled()
        ais = pd.read_csv(small_world.ais_path)
        keep = sorted(ais.mmsi.unique())[:4]
        good = tmp_path / "four_ships.csv"
        ais.loc[ais.mmsi.isin(keep)].to_csv(good, index=False)
        page.upload(good)
        page.wait_for(lambda: "Accepted" in page.text(".s2xr-upload-msg"), timeout_s=30,
                      what="the upload check")
        assert "4 ship(s)" in page.text(".s2xr-upload-msg")
        page.click("Chip this file")
        page.wait_for(lambda: "chip job for" in page.text(".s2xr-status"), timeout_s=15,
                      what="the chip job")
        assert page.wait_state("done", "failed", timeout_s=90) == "done"
        result = page.text(".s2xr-status")
        assert "0 deferred" in result and " 0 already in the dataset" not in result, result
        assert consistent(root) == ui_chips  # the same ships and scenes: nothing new

        # -- prune against the uploaded file: dry-run preview, then prune
        page.open_card("Prune by AIS", "Preview (dry run)")
        page.page.locator(".s2xr-prune-obs select").select_option(
            label="last uploaded AIS file")
        page.click("Preview (dry run)")
        page.wait_for(lambda: "dry run:" in page.text(".s2xr-prune-msg"), timeout_s=60,
                      what="the prune preview")
        idx = read_index(root)
        expect = set(idx.loc[~idx.mmsi.isin(keep), "chip_id"])
        assert f"{len(expect)} chip(s) would be removed" in page.text(".s2xr-prune-msg")
        assert len(read_index(root)) == len(idx)  # the preview removed nothing
        # most of the dataset: the guard refuses unless "Force" is ticked explicitly
        assert "a prune would be refused" in page.text(".s2xr-prune-msg")
        assert page.button(f"Prune {len(expect)} chip(s)").is_disabled()
        page.shot(artifacts / "06_prune_preview.png", full_page=True)
        page.page.locator(".s2xr-prune-force input[type=checkbox]").first.check()
        page.click(f"Prune {len(expect)} chip(s)")
        page.wait_for(lambda: "from every store" in page.text(".s2xr-prune-msg"),
                      timeout_s=60, what="the prune")
        assert f"removed {len(expect)} chip(s)" in page.text(".s2xr-prune-msg")
        assert "s2xr prune --undo pruned/" in page.text(".s2xr-prune-msg")
        after = consistent(root)
        assert after == ui_chips - expect
        assert set(read_index(root).mmsi) <= set(keep)

        # -- a second session sees the same job; Stop from it stops the continuous run
        page.page.get_by_role("button", name="Continuous").click()
        page.click("▶ Start")
        page.wait_state("running", timeout_s=15)
        other = DashboardPage(browser.new_context(
            viewport={"width": 1440, "height": 900}).new_page()).open(server.url)
        assert other.wait_state("running") == "running"
        assert "continuous" in other.text(".s2xr-status")
        other.wait_for(lambda: "next cycle" in other.text(".s2xr-status"), timeout_s=60,
                       what="the pause between cycles")
        other.click("■ Stop")
        assert page.wait_state("stopped", timeout_s=30) == "stopped"
        assert other.wait_state("stopped", timeout_s=10) == "stopped"
        assert consistent(root) == after
        errors = page.errors() + other.errors()
        assert not errors, (errors, page.external + other.external)
        # BokehJS warned "could not set initial ranges" 23 times in this walk, before the
        # plots got explicit ranges
        warned = page.bokeh_warnings() + other.bokeh_warnings()
        assert not warned, warned
        assert not page.external + other.external  # nothing fetched from outside 127.0.0.1
    shutil.copy(cfg_path, artifacts / "config.yaml")


def test_fresh_machine_offers_to_build_the_world(tmp_path, artifacts):
    """No world yet: the first screen offers to build it; the button builds it and the page
    then shows it (and its window on the map)."""
    data = yaml.safe_load(Path("configs/demo.yaml").read_text())
    data["storage"]["root"] = str(tmp_path / "fresh")
    data["demo"].update(SMALL_WORLD)
    cfg_path = tmp_path / "fresh.yaml"
    cfg_path.write_text(yaml.safe_dump(data))
    with DashboardServer(cfg_path, log_path=artifacts / "fresh-server.log") as server, \
            chromium() as browser:
        page = DashboardPage(browser.new_page(viewport={"width": 1440, "height": 900}))
        page.open(server.url)
        assert "not built yet" in page.text(".s2xr-dataset")
        page.shot(artifacts / "00_fresh_machine.png")
        # empty states say what will appear and how to get it
        page.tab("Map")
        page.wait_for(lambda: "No chips yet" in page.text(".s2xr-tabs"), timeout_s=30,
                      what="the map's empty state")
        page.tab("Schedule")
        page.wait_for(lambda: "No overpass schedule yet" in page.text(".s2xr-tabs"),
                      timeout_s=30, what="the schedule's empty state")
        page.tab("Gallery")
        assert "No chips yet: start a run." in page.text(".s2xr-gallery")
        page.click("Build the embedded world")
        assert page.wait_state("done", "failed", timeout_s=600) == "done"
        page.wait_for(lambda: "synthetic" in page.text(".s2xr-dataset"), timeout_s=30,
                      what="the world card")
        assert (tmp_path / "fresh" / "world" / "world.json").is_file()
        page.tab("Map")
        page.page.locator(".s2xr-map canvas").first.wait_for(timeout=60_000)
        assert not page.errors(), page.errors()
        assert not page.bokeh_warnings(), page.bokeh_warnings()  # see the first test


def test_oversize_upload_is_refused_in_the_browser(tmp_path, artifacts):
    """Item 9: a file above --max-upload-mb (and above what one websocket message may carry)
    is refused by the upload widget in the browser with the limit and the CLI alternative;
    the session stays connected and the next (small) upload is checked as usual."""
    data = yaml.safe_load(Path("configs/demo.yaml").read_text())
    data["storage"]["root"] = str(tmp_path / "ds")
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(yaml.safe_dump(data))
    big = tmp_path / "big.csv"  # 5 MB: base64 over the old websocket limit for 1 MB
    row = b"235000001,36.00000,-5.40000,2026-10-02T11:00:00Z\n"
    big.write_bytes(b"mmsi,lat,lon,time\n" + row * (5_000_000 // len(row)))
    good = tmp_path / "two_ships.csv"
    good.write_text("mmsi,lat,lon,time\n235000001,36.0,-5.4,2026-10-02T11:00:00Z\n"
                    "235000002,36.1,-5.3,2026-10-02T11:00:00Z\n")
    with DashboardServer(cfg_path, log_path=artifacts / "upload-server.log",
                         extra_args=["--max-upload-mb", "1"]) as server, \
            chromium() as browser:
        page = DashboardPage(browser.new_page(viewport={"width": 1440, "height": 900}))
        page.open(server.url)
        assert "at most 1 MB" in page.text(".s2xr-upload-msg")
        page.upload(big)
        page.wait_for(lambda: "upload limit 1 MB" in page.text(".s2xr-upload"),
                      timeout_s=30, what="the refusal in the upload widget")
        text = page.text(".s2xr-upload")
        assert "Too large" in text and "big.csv" in text, text
        assert "5 MB" in text or "5.0 MB" in text  # the file's own size, beside its name
        # and the full message beside the widget, from the server
        page.wait_for(lambda: "Refused" in page.text(".s2xr-upload-msg"), timeout_s=15,
                      what="the refusal message")
        assert ("Refused big.csv: file is 5.0 MB; the upload limit is 1 MB; use s2xr chip "
                "--ais FILE for large files") in page.text(".s2xr-upload-msg")
        page.page.locator(".s2xr-upload").first.scroll_into_view_if_needed()
        page.shot(artifacts / "07_upload_over_the_limit.png")
        # still connected: the next upload reaches the server and is validated
        page.upload(good)
        page.wait_for(lambda: "Accepted" in page.text(".s2xr-upload-msg"), timeout_s=30,
                      what="the small upload's check")
        assert "2 ship(s)" in page.text(".s2xr-upload-msg")
        assert page.state() == "idle"
        assert not page.errors(), page.errors()
        assert "WebSocket connection closed" not in server.log_tail(200)


def test_a_run_started_outside_the_dashboard_appears_in_it(small_world, tmp_path, artifacts):
    """`s2xr run` from a shell (as cron or systemd start it) on the dashboard's dataset: the
    open page shows it running — its stage, counts and log tail, at a laptop's 1280×720 —
    and then its chips."""
    import subprocess
    import sys

    from s2xr.procs import spawn_child, stop_child

    cfg_path, root = write_config(tmp_path, "ext", small_world.root)
    with DashboardServer(cfg_path, log_path=artifacts / "ext-server.log") as server, \
            chromium() as browser:
        page = DashboardPage(browser.new_page(viewport={"width": 1280, "height": 720}))
        page.open(server.url)
        assert page.state() == "idle"
        start = page.button("▶ Start").bounding_box()  # no scrolling needed on a laptop
        assert start is not None and start["y"] + start["height"] <= 720, start
        with (artifacts / "ext-cli-run.log").open("wb") as out:
            proc = spawn_child([sys.executable, "-m", "pipelines.cli", "run", "--config",
                                str(cfg_path)], stdout=out, stderr=subprocess.STDOUT)
            try:
                page.wait_for(lambda: "started outside the dashboard" in
                              page.text(".s2xr-status"), timeout_s=120, what="the CLI run")
                assert page.state() == "running"
                assert f"(pid {proc.pid})" in page.text(".s2xr-status")
                assert page.button("■ Stop").is_disabled()  # not the dashboard's to stop
                page.wait_for(lambda: "stage " in page.text(".s2xr-logtail"), timeout_s=60,
                              what="the CLI run's log tail")
                page.shot(artifacts / "08_cli_run_in_the_dashboard.png")
                assert proc.wait(timeout=600) == 0
            finally:
                stop_child(proc)
        passed = consistent(root)
        page.wait_for(lambda: page.state() == "idle", timeout_s=30, what="the run's end")
        page.wait_for(lambda: page.page.locator("figure.qg-item").count() == len(passed),
                      timeout_s=60, what="the CLI run's chips in the gallery")
        # the index fits or scrolls sideways: its last columns can be brought into view
        page.tab("Chip index")
        header = page.page.locator(".s2xr-table .tabulator-col[tabulator-field=qa_reason]")

        def qa_reason_in_view() -> bool:
            # (the table lays itself out again once its tab is shown: scroll until it holds)
            header.first.scroll_into_view_if_needed()
            box, table = header.first.bounding_box(), page.page.locator(
                ".s2xr-table .tabulator").first.bounding_box()
            return bool(box and table and box["x"] >= table["x"] - 1 and
                        box["x"] + box["width"] <= table["x"] + table["width"] + 1)

        page.wait_for(qa_reason_in_view, timeout_s=30, what="qa_reason scrolled into view")
        assert not page.errors(), page.errors()
        assert not page.bokeh_warnings(), page.bokeh_warnings()  # see the first test
