"""Dashboard: time from opening the page to the first quicklooks in the gallery.

    .venv/bin/python benchmarks/dashboard_render.py                 # the demo dataset
    .venv/bin/python benchmarks/dashboard_render.py --root s2xr-demo  # an existing dataset
    .venv/bin/python benchmarks/dashboard_render.py --quick         # a small world

Without ``--root`` it first runs ``s2xr demo`` into a temporary directory (the demo
dataset: 111 chips, 76 passed; ``--quick``: a 1024² world with 12 ships). It then serves
the dataset with ``s2xr dashboard`` on 127.0.0.1. It opens the page ``--repeats`` times in
Debian's Chromium, each in a fresh browser context, and times ``page.goto`` until the
gallery shows its first quicklook. The same run also times ``page.goto`` until the page's
status badge appears, as the baseline: the page shell without the data. Ends with one
JSON line (``first_gallery_s``, the median, ``first_badge_s``, ``ratio``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from dashboards.browser import REPO, DashboardPage, DashboardServer, chromium  # noqa: E402


def demo_dataset(tmp: Path, quick: bool) -> tuple[Path, Path]:
    """(config, root) of a dataset made by ``s2xr demo`` under ``tmp``."""
    data = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())
    root = tmp / "demo"
    data["storage"]["root"] = str(root)
    if quick:
        data["demo"].update({"window_px": 1024, "n_ships": 12, "n_scenes": 2})
    cfg = tmp / "demo.yaml"
    cfg.write_text(yaml.safe_dump(data))
    subprocess.run([sys.executable, "-m", "pipelines.cli", "-q", "demo", "--config", str(cfg)],
                   check=True, cwd=REPO, stdout=subprocess.DEVNULL)
    return cfg, root


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", type=Path, default=None, help="an existing dataset root")
    ap.add_argument("--quick", action="store_true", help="a small world, 2 repeats")
    ap.add_argument("--repeats", type=int, default=None, help="default 5 (quick 2)")
    args = ap.parse_args()
    repeats = args.repeats or (2 if args.quick else 5)
    with tempfile.TemporaryDirectory(prefix="s2xr-render-") as tmp:
        if args.root is None:
            cfg, root = demo_dataset(Path(tmp), args.quick)
        else:
            root = args.root.resolve()
            data = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())
            data["storage"]["root"] = str(root)
            cfg = Path(tmp) / "c.yaml"
            cfg.write_text(yaml.safe_dump(data))
        gallery, badge = [], []
        with DashboardServer(cfg, log_path=Path(tmp) / "server.log") as server, \
                chromium() as browser:
            for _ in range(repeats):
                for times, css in ((badge, ".s2xr-badge"), (gallery, "figure.qg-item")):
                    context = browser.new_context(viewport={"width": 1440, "height": 900})
                    page = DashboardPage(context.new_page())
                    t = time.perf_counter()
                    page.page.goto(server.url, timeout=120_000)
                    page.page.locator(css).first.wait_for(timeout=120_000)
                    times.append(time.perf_counter() - t)
                    n = page.page.locator("figure.qg-item").count()
                    context.close()
                print(f"badge {badge[-1]:5.2f} s   first quicklooks {gallery[-1]:5.2f} s "
                      f"({n} shown)", flush=True)
    g, b = statistics.median(gallery), statistics.median(badge)
    print(json.dumps({"benchmark": "dashboard_render", "quick": args.quick,
                      "repeats": repeats, "first_gallery_s": g, "first_badge_s": b,
                      "ratio": g / b}))


if __name__ == "__main__":
    main()
