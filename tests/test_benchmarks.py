"""Smoke runs of every benchmark (--quick) so they cannot rot. No timing assertions: the
checks are on what they print (equality of methods is enforced inside chip_throughput)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).parent.parent


def run(script: str, *args: str) -> dict:
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_chip_throughput_quick():
    out = run("chip_throughput.py", "--quick")
    for key in ("d_over_a_sparse", "d_over_a_dense", "d_over_b_sparse", "d_over_b_dense",
                "d_over_c_sparse", "d_over_c_dense", "e_over_d", "chips_per_s_d"):
        assert isinstance(out[key], float) and out[key] > 0, key
    assert {r["layout"] for r in out["rows"]} == {"sparse", "dense"}


def test_stac_requests_quick():
    out = run("stac_requests.py", "--quick")
    assert out["requests_s2xr"] <= out["tile_days"]
    assert out["requests_per_point_baseline"] >= 1.0


def test_memory_quick():
    out = run("memory.py", "--quick")
    assert {"peak_rss_mb_1k", "peak_rss_mb_5k", "peak_rss_mb_20k"} <= set(out)


def test_planning_agreement_quick():
    out = run("planning_agreement.py", "--quick")
    assert out["pairs"] > 0 and out["tle_found_share"] == 1.0
    assert out["same_orbit_share"] == 1.0
    # TLE and ESA windows agree to within half a minute (see docs/planning.md)
    assert out["d_centre_s"]["max_abs"] < 30


def test_ais_memory_quick():
    out = run("ais_memory.py", "--quick")
    assert out["rows_big"] == 60_000 and out["chips_big"] > 0 and out["chips_small"] > 0
    assert out["hwm_mb_big"] > 0 and out["hwm_mb_small"] > 0
    # the ops DB keeps the fixes chips depend on, not every row of the big file
    assert out["ops_db_mb_big"] < 3 * out["ops_db_mb_small"]


def test_end_to_end_quick():
    out = run("end_to_end.py", "--quick")
    assert out["n"] == 100 and out["chips_per_s_local"] > 0 and out["chips_per_s_cut"] > 0
    assert out["write_overhead"] == pytest.approx(
        out["seconds_cut_and_write"] / out["seconds_cut"] - 1)
    assert out["chips_per_s_s3"] > 0  # into a bucket of moto's S3 on 127.0.0.1
    assert out["s3_vs_local"] == pytest.approx(
        out["chips_per_s_local"] / out["chips_per_s_s3"])


def test_dashboard_render_quick():
    from dashboards.browser import CHROMIUM

    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} missing (apt-get install chromium)")
    out = run("dashboard_render.py", "--quick")
    assert out["quick"] and out["repeats"] == 2
    assert out["first_gallery_s"] > 0 and out["first_badge_s"] > 0
    assert out["ratio"] == pytest.approx(out["first_gallery_s"] / out["first_badge_s"])
