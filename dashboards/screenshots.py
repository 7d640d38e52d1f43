"""Screenshots of the dashboard for the docs: ``python -m dashboards.screenshots --out docs/img``.

Starts ``s2xr dashboard`` on 127.0.0.1 with ``configs/demo.yaml`` (the embedded offline
world) and a fresh dataset root, runs a batch from the UI in Debian's Chromium, and writes

* ``dashboard_running.png`` — the status of the running job (stage, progress, log tail);
* ``dashboard_gallery.png`` — the quicklook gallery and one chip's detail;
* ``dashboard_map.png`` — tile, world and chip footprints over the newest scene (no
  basemap: offline), with the tooltip of the biggest pile of footprints;
* ``dashboard_index.png``, ``dashboard_schedule.png`` — the chip table, the schedule.

Nothing leaves the machine (background networking off, no basemap tiles).
"""

from __future__ import annotations

import argparse
import logging
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from dashboards.browser import REPO, DashboardPage, DashboardServer, chromium

log = logging.getLogger(__name__)

VIEWPORT = {"width": 1440, "height": 960}


def _config(source: Path, root: Path, small: bool) -> Path:
    data = yaml.safe_load(source.read_text()) or {}
    data.setdefault("storage", {})["root"] = str(root)
    if small:
        data.setdefault("demo", {}).update({"window_px": 1024, "n_ships": 12, "n_scenes": 2})
    path = root.parent / "dashboard-screenshots.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def take(out: Path, config: Path, *, root: Path | None = None, small: bool = False,
         timeout_s: float = 600) -> list[Path]:
    """Run a batch from the UI and write the screenshots to ``out``; returns the files."""
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="s2xr-screens-"))
    root = root or work / "dataset"
    root.mkdir(parents=True, exist_ok=True)
    cfg = _config(config, root, small)
    files: list[Path] = []
    try:
        with DashboardServer(cfg, log_path=work / "server.log") as server, \
                chromium() as browser:
            page = DashboardPage(browser.new_page(viewport=VIEWPORT)).open(server.url)
            page.click("▶ Start")
            page.wait_state("running", timeout_s=30)
            # the status while chips are cut and written, with their count (else while
            # running at all)
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline and page.state() == "running":
                if page.stage() == "chip" and re.search(r"\d+ / \d+ chips",
                                                         page.text(".s2xr-status")):
                    time.sleep(0.3)  # the log tail catches up
                    break
                time.sleep(0.1)
            files.append(page.shot(out / "dashboard_running.png"))
            if page.wait_state("done", "failed", "stopped", timeout_s=timeout_s) != "done":
                raise RuntimeError(f"the run did not finish: {page.text('.s2xr-status')}")
            page.wait_for(lambda: page.page.locator("figure.qg-item").count() > 0,
                          timeout_s=30, what="quicklooks")
            page.page.locator("figure.qg-item").nth(0).click()
            page.page.locator(".s2xr-detail-images img").first.wait_for(timeout=30_000)
            time.sleep(0.5)
            tabs = page.page.locator(".s2xr-tabs").first
            page.page.mouse.move(1, 1)  # no hover outline on another quicklook
            files.append(_element_shot(tabs, out / "dashboard_gallery.png"))
            page.tab("Map")
            page.page.locator(".s2xr-map canvas").first.wait_for(timeout=30_000)
            page.wait_for(lambda: page.bokeh_models("ImageRGBA") >= 1, timeout_s=30,
                          what="the scene under the footprints")
            tabs.scroll_into_view_if_needed()
            time.sleep(1.0)
            mark = page.busiest_marker()  # its one tooltip in the picture
            if mark is not None:
                page.page.mouse.move(mark["x"], mark["y"])
                page.wait_for(page.tooltips, timeout_s=10, what="the marker's tooltip")
            files.append(_element_shot(tabs, out / "dashboard_map.png"))
            page.tab("Chip index")
            page.wait_for(lambda: page.page.locator(".s2xr-table .tabulator-row").count(),
                          timeout_s=30, what="index rows")
            files.append(_element_shot(tabs, out / "dashboard_index.png"))
            page.tab("Schedule")
            time.sleep(1.0)
            files.append(_element_shot(tabs, out / "dashboard_schedule.png"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return files


def _element_shot(locator: Any, path: Path, max_height: float = 860) -> Path:
    """The element's top part (tabs grow with their longest content)."""
    locator.scroll_into_view_if_needed()
    box = locator.bounding_box()
    locator.page.screenshot(path=str(path), full_page=True, clip={
        "x": box["x"], "y": box["y"], "width": box["width"],
        "height": min(box["height"], max_height)})
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dashboards.screenshots",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "img",
                    help="where to write dashboard_*.png (default: docs/img)")
    ap.add_argument("--config", type=Path, default=REPO / "configs" / "demo.yaml",
                    help="config to serve (storage.root is replaced by a temp dir)")
    ap.add_argument("--small", action="store_true",
                    help="a smaller embedded world (faster, fewer chips)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for f in take(args.out, args.config, small=args.small):
        print(f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
