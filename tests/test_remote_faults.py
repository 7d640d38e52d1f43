"""Read faults are not data (issue 15, item 3): the chip job reading the world's COGs over
HTTP from the latency server with a 5 % fault rate, then `s2xr ops retry`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from pipelines.chip_job import run_chip_job
from pipelines.cli import main
from s2xr.chips import cut
from s2xr.config import build_config
from s2xr.demo import StacApiServer
from s2xr.demo.cog_server import CogServer, write_http_items
from s2xr.ops import JobStore
from s2xr.scenes import handles, reader, remote
from s2xr.store import open_chips, read_index
from s2xr.store.layout import DatasetLayout


def _cfg(root: Path, url: str, **stac: object) -> object:
    data = {"stac": {"api_url": url, "collection": "sentinel-2-l2a", "window_hours": 6,
                     "read_timeout_s": 2, **stac},
            "storage": {"root": str(root)}, "demo": {}, "ops": {"initial_backoff_min": 0}}
    return build_config(data, environ={}, dotenv_path=None)


@pytest.fixture(scope="module")
def ais(world, tmp_path_factory) -> Path:
    pts = pd.read_csv(world.ais_path)
    keep = pts["mmsi"].drop_duplicates().head(12)
    out = tmp_path_factory.mktemp("ais") / "ais.csv"
    pts.loc[pts["mmsi"].isin(keep)].to_csv(out, index=False)
    return out


class Served:
    """The world's COGs over HTTP (``cogs``) and a STAC API whose items point there."""

    def __init__(self, world, tmp: Path, **link: object) -> None:
        self.cogs = CogServer(world.root, **link)
        self.world, self.tmp = world, tmp

    def __enter__(self) -> Served:
        self.cogs.__enter__()
        items = write_http_items(self.world.items_path, self.tmp / "items-http.json",
                                 self.world.root, self.cogs.url)
        self.stac = StacApiServer(self.world.collection_path, items).__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stac.__exit__(None, None, None)
        self.cogs.__exit__(None, None, None)


def _chips(root: Path) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    idx = read_index(root).sort_values("chip_id").reset_index(drop=True)
    cube = open_chips(root)
    pixels = dict(zip([str(c) for c in cube["chip_id"].values], cube["reflectance"].values,
                      strict=True))
    return idx, pixels


@pytest.fixture(scope="module")
def reference(world, ais, tmp_path_factory):
    """A fault-free run over HTTP."""
    tmp = tmp_path_factory.mktemp("ref")
    reader.reset_dataset_cache()
    with Served(world, tmp) as s:
        res = run_chip_job(_cfg(tmp / "ds", s.stac.url), ais)
    assert res.n_chips >= 10 and res.n_passed >= 5
    return _chips(tmp / "ds")


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_five_percent_faults_then_ops_retry_equal_a_fault_free_run(world, ais, reference,
                                                                   tmp_path, monkeypatch):
    ref_idx, ref_pixels = reference
    root = tmp_path / "ds"
    # first run: every fault is final (no GDAL or s2xr retries, no read-ahead whose
    # failures the reader would retry), so the server's seeded faults fail blocks
    monkeypatch.setattr(handles, "READ_ATTEMPTS", 1)
    monkeypatch.setattr(cut, "read_ahead_task", lambda *a: None)
    monkeypatch.setitem(remote.GDAL_OPTIONS, "GDAL_HTTP_MAX_RETRY", 0)
    reader.reset_dataset_cache()
    with Served(world, tmp_path, fault_rate=0.05, fault_kinds=("503", "reset"), seed=3) as s:
        cfg = _cfg(root, s.stac.url)
        # GDAL itself re-requests a failed range of an open file, so the faults that fail
        # reads are those at an open: the first two requests (opens) fail for certain
        s.cogs.inject("503", 2)
        run_chip_job(cfg, ais)
        assert sum(s.cogs.counts().faults.values()) > 2
        idx = read_index(root)
        bad = idx.loc[idx["qa_reason"].astype(str).str.startswith("read_error")]
        assert len(bad) > 0, "no read failed: the fault rate did not reach a block"
        # nothing is written for a chip whose read failed: no files, no cube row
        layout = DatasetLayout.of(cfg)
        for cid in bad["chip_id"]:
            assert not list(layout.chips.rglob(f"*{cid}*")), cid
        stored = open_chips(root / "chips.zarr")["chip_id"].values
        assert not set(bad["chip_id"]) & {str(c) for c in stored}
        # recorded: failed (retried) jobs naming the item and the asset that failed
        store = JobStore(layout.ops_db, cfg.ops)
        failed = store.jobs(states=("failed",)).set_index("chip_id").loc[bad["chip_id"]]
        assert failed["reason"].str.contains("asset(s) ", regex=False).all(), failed["reason"]
        assert all(item in r for item, r in zip(failed["item_id"], failed["reason"],
                                                 strict=True))

        # `s2xr ops retry` with the reader's retries back, the faults still on
        monkeypatch.undo()
        reader.reset_dataset_cache()
        cfg_file = tmp_path / "cfg.yaml"
        cfg_file.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
        out = CliRunner().invoke(main, ["ops", "retry", "--config", str(cfg_file)])
        assert out.exit_code == 0, out.output
    idx, pixels = _chips(root)
    cols = ["chip_id", "qa_pass", "qa_reason", "scene_id", "mmsi"]
    pd.testing.assert_frame_equal(idx[cols], ref_idx[cols])
    assert pixels.keys() == ref_pixels.keys()
    for cid, px in ref_pixels.items():
        np.testing.assert_array_equal(pixels[cid], px, err_msg=cid)
    assert store.jobs(states=("failed", "deferred", "pending")).empty


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_stalled_connection_costs_the_read_timeout_not_the_run(world, ais, reference,
                                                                 tmp_path):
    """Connections that stall (no answer for 10 minutes) are abandoned after
    ``stac.read_timeout_s`` and the block is read again: the run ends with the fault-free
    chips (the test's timeout would end a hang)."""
    ref_idx, ref_pixels = reference
    reader.reset_dataset_cache()
    with Served(world, tmp_path, stall_s=600) as s:
        s.cogs.inject("stall", 3)
        run_chip_job(_cfg(tmp_path / "ds", s.stac.url), ais)
        assert s.cogs.counts().faults.get("stall") == 3
    idx, pixels = _chips(tmp_path / "ds")
    assert list(idx["chip_id"]) == list(ref_idx["chip_id"])
    assert list(idx["qa_pass"]) == list(ref_idx["qa_pass"])
    for cid, px in ref_pixels.items():
        np.testing.assert_array_equal(pixels[cid], px, err_msg=cid)


@pytest.mark.parametrize("kind", ["503", "reset"])
def test_a_failed_open_is_retried_at_the_server_not_from_gdals_cache(world, kind,
                                                                    monkeypatch):
    """GDAL caches a failed open of a URL (once its own retries are spent: none here); the
    reader makes it forget the URL before the next try, so the retry is a request (not the
    cached failure) and it succeeds."""
    from s2xr.demo.cog_server import http_items
    from s2xr.scenes import dedupe_items

    item = dedupe_items(world.items())[0]
    monkeypatch.setitem(remote.GDAL_OPTIONS, "GDAL_HTTP_MAX_RETRY", 0)
    reader.reset_dataset_cache()
    with CogServer(world.root) as srv:
        href = http_items([item], world.root, srv.url, tag=f"open{kind}")[0][
            "assets"]["red"]["href"]
        srv.inject(kind, 1)
        block = reader.BLOCKS.get(href, 0, 0)
        c = srv.counts()
    assert block.size > 0 and c.faults == {kind: 1}
    assert c.requests >= 2  # the failed request and the retry's
