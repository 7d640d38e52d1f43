"""s2xr reading the embedded world over HTTP from the latency server (s2xr.demo.cog_server):
the same pixels as from file://, STAC items that carry http hrefs, and the remote
throughput benchmark's smoke run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests
from helpers.plans import plan_at_pixels

from s2xr.demo import StacApiServer
from s2xr.demo.cog_server import CogServer, http_items, write_http_items
from s2xr.scenes import dedupe_items, stack_scenes

ROOT = Path(__file__).parent.parent
BANDS = ["blue", "red", "nir", "swir16"]


@pytest.fixture(scope="module")
def item(world):
    return dedupe_items(world.items())[0]


def test_stack_over_http_equals_the_stack_from_files(world, item):
    local = stack_scenes([item], BANDS)
    window = {"time": 0, "y": slice(900, 1300), "x": slice(300, 900)}  # 2×2 stack blocks
    want = local.isel(window).values
    with CogServer(world.root, latency_s=0.005) as srv:
        remote = stack_scenes(http_items([item], world.root, srv.url), BANDS)
        got = remote.isel(window).values
        c = srv.counts()
    np.testing.assert_array_equal(got, want)
    assert not np.isnan(got[:-1]).all() and c.requests > 0
    assert c.faults == {} and set(c.by_status) <= {200, 206}
    sizes = sum(Path(a["href"].removeprefix("file://")).stat().st_size
                for k, a in item["assets"].items() if k in (*BANDS, "scl"))
    assert 0 < c.bytes_served < sizes  # windows, not whole files


def test_http_items_rewrite_only_hrefs_under_the_root(world, item, tmp_path):
    outside = {**item, "assets": {**item["assets"],
                                  "thumbnail": {"href": "https://example.com/t.png"}}}
    out = http_items([outside], world.root, "http://127.0.0.1:9", tag="t1")[0]
    assert out["assets"]["red"]["href"].startswith("http://127.0.0.1:9/@t1/scenes/")
    assert out["assets"]["thumbnail"]["href"] == "https://example.com/t.png"
    assert item["assets"]["red"]["href"].startswith("file://")  # the input is not changed
    assert {k: v for k, v in out.items() if k != "assets"} == {
        k: v for k, v in item.items() if k != "assets"}


def test_stac_api_serves_items_with_http_hrefs(world, tmp_path):
    with CogServer(world.root) as cogs:
        path = write_http_items(world.items_path, tmp_path / "items-http.json", world.root,
                                cogs.url)
        with StacApiServer(world.collection_path, path) as stac:
            r = requests.get(f"{stac.url}/search", params={"limit": 100}, timeout=30)
            feats = r.json()["features"]
        assert len(feats) == len(world.item_ids)
        hrefs = [a["href"] for f in feats for k, a in f["assets"].items() if k != "thumbnail"]
        assert hrefs and all(h.startswith(cogs.url + "/scenes/") for h in hrefs)
        head = requests.head(hrefs[0], timeout=30)
        assert head.status_code == 200 and int(head.headers["Content-Length"]) > 0


@pytest.mark.slow
def test_remote_throughput_quick():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "remote_throughput.py"),
                           "--quick"], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    for key in ("d_over_a_20ms", "d_over_b_20ms", "d_over_floor_20ms", "requests_per_chip_d",
                "bytes_over_blocks_d"):
        assert isinstance(out[key], float) and out[key] > 0, key
    assert {(r["layout"], r["method"]) for r in out["rows"]} == {
        (lay, m) for lay in ("sparse", "dense") for m in "abd"}


def _sparse_plan(item: dict, n: int = 24) -> pd.DataFrame:
    """``n`` 64-px chips spread over the item's 2048² window, more than one per stack block."""
    return plan_at_pixels(item, [(64 + 480 * (k % 4), 64 + 420 * (k // 4 % 5))
                                 for k in range(n)])


@pytest.mark.parametrize("io_threads", [1, 24])
def test_io_threads_set_the_requests_in_flight_and_read_ahead_fills_them(world, item,
                                                                        io_threads):
    """``stac.io_threads`` (here ``load_stack``'s ``io_threads``) bounds the range requests
    in flight; with many, the read-ahead of a chip batch's blocks keeps more in flight than
    the two Dask threads could. The chips equal the local ones either way."""
    import dask

    from s2xr.chips import cut_chips
    from s2xr.config import ChipSpec
    from s2xr.scenes import stack_by_epsg
    from s2xr.scenes.reader import reset_dataset_cache

    spec = ChipSpec(bands=["blue", "red", "nir"], include_swir=True, batch_size=12)
    plan = _sparse_plan(item)
    want = cut_chips(stack_scenes([item], spec.all_bands), plan, spec)["reflectance"].values
    reset_dataset_cache()
    with CogServer(world.root, latency_s=0.05) as srv:
        items = http_items([item], world.root, srv.url, tag=f"io{io_threads}")
        stack = next(iter(stack_by_epsg(items, spec.all_bands,
                                        io_threads=io_threads).values()))
        with dask.config.set(scheduler="threads", num_workers=2):
            got = cut_chips(stack, plan, spec)["reflectance"].values
        c = srv.counts()
    np.testing.assert_array_equal(got, want)
    if io_threads == 1:
        assert c.peak_in_flight <= 3  # one I/O thread + the two Dask threads' own opens
    else:
        assert c.peak_in_flight >= 8, c


def test_an_asset_opened_by_many_threads_at_once_is_fetched_once(world, item):
    """Sixteen I/O threads opening a fresh URL at the same moment send one HEAD and one
    header read, not one each (the first open goes alone; the rest open from GDAL's cache);
    ``fetch`` of a block another thread is fetching returns without a second request."""
    import threading

    from s2xr.scenes import reader

    reader.reset_dataset_cache()
    with CogServer(world.root, latency_s=0.05) as srv:
        href = http_items([item], world.root, srv.url, tag="first-open")[0]["assets"][
            "red"]["href"]
        errors: list[BaseException] = []

        def at_once(n: int, call) -> None:
            """``call()`` in ``n`` threads released together; their errors kept."""
            go = threading.Barrier(n)

            def run() -> None:
                go.wait()
                try:
                    call()
                except BaseException as exc:
                    errors.append(exc)

            threads = [threading.Thread(target=run) for _ in range(n)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)

        at_once(16, lambda: reader.open_dataset(href))
        opened = srv.counts()
        srv.reset()
        at_once(8, lambda: reader.BLOCKS.fetch(href, 0, 0))
        fetched = srv.counts()
    assert not errors, errors
    assert opened.by_method.get("HEAD", 0) == 1, opened.by_method
    assert opened.requests == 2, opened  # HEAD + one header read
    assert fetched.requests == 1, fetched
    assert not reader.BLOCKS.wanted(href, 0, 0)  # cached
    reader.reset_dataset_cache()
