"""Chips written by the tasks that cut them: on a cluster the worker processes write the files
and cube regions and the client only commits the index; a run that dies mid-way leaves
nothing a reader sees, and its re-run gives the chip set of a clean run."""

from __future__ import annotations

import os
from pathlib import Path

import dask
import numpy as np
import pandas as pd
import pytest
from test_write_chips import GATE, ITEM_META, SPEC, STACK, make_plan

from s2xr.chips import cut_chips
from s2xr.config import StorageConfig
from s2xr.gate import gate_chips
from s2xr.store import batch, open_chips, read_index, write_chips
from s2xr.store.consistency import reconcile

MANY = {224000100 + k: (10 + 9 * (k % 11), 10 + 85 * (k // 11), ("train", "val", "test")[k % 3])
        for k in range(22)}  # 22 ships in two columns; the east one's south end is under cloud


def _write(root: Path | StorageConfig, ships=MANY, **kw):
    plan = make_plan(ships)
    gated = gate_chips(cut_chips(STACK, plan, SPEC), GATE)
    cfg = root if isinstance(root, StorageConfig) else StorageConfig(root=root)
    return plan, write_chips(gated, plan, cfg, GATE, item_meta=ITEM_META, block_size=4, **kw)


def write_dying_at_third_batch(root: Path | StorageConfig, monkeypatch: pytest.MonkeyPatch,
                               why: str) -> None:
    """:func:`_write` (synchronous scheduler) whose third batch raises ``OSError(why)``."""
    real, calls = batch._write_files, {"n": 0}

    def dies_on_the_third_batch(*args, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(why)
        return real(*args, **kw)

    monkeypatch.setattr(batch, "_write_files", dies_on_the_third_batch)
    with dask.config.set(scheduler="synchronous"), pytest.raises(OSError, match=why):
        _write(root)
    monkeypatch.undo()


def _dataset(root: Path) -> tuple[pd.DataFrame, dict[str, np.ndarray], set[str]]:
    idx = read_index(root).sort_values("chip_id").reset_index(drop=True)
    cube = open_chips(root)
    pixels = {str(c): cube["reflectance"].values[k] for k, c in enumerate(cube["chip_id"].values)}
    files = {str(p.relative_to(root)) for p in (root / "chips").rglob("*") if p.is_file()}
    return idx.drop(columns="geometry"), pixels, files


def _assert_same_dataset(root: Path, want: tuple[pd.DataFrame, dict[str, np.ndarray], set[str]]
                         ) -> None:
    idx, pixels, files = _dataset(root)
    c_idx, c_pixels, c_files = want
    pd.testing.assert_frame_equal(idx, c_idx)
    assert files == c_files and pixels.keys() == c_pixels.keys()
    for cid, px in c_pixels.items():
        np.testing.assert_array_equal(pixels[cid], px, err_msg=cid)


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    root = tmp_path_factory.mktemp("clean")
    with dask.config.set(scheduler="threads"):
        _, summary = _write(root)
    assert summary.n_chips == 22 and 0 < summary.n_passed < 22
    assert summary.writer_pids == {os.getpid()}  # threads: this process
    return root, _dataset(root)


@pytest.mark.slow
def test_on_a_cluster_the_workers_write_and_the_dataset_is_the_same(clean, tmp_path):
    from distributed import Client, LocalCluster

    root = tmp_path / "cluster"
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None, host="127.0.0.1") as cluster, \
            Client(cluster) as client:
        workers = set(client.run(os.getpid).values())
        _, summary = _write(root)
    assert summary.writer_pids and summary.writer_pids <= workers  # not this process
    _assert_same_dataset(root, clean[1])


def test_a_run_that_dies_mid_way_commits_nothing_and_its_rerun_is_a_clean_run(
        clean, tmp_path, monkeypatch):
    root = tmp_path / "ds"
    write_dying_at_third_batch(root, monkeypatch, "disk gone")
    # what the crash left: files and cube rows of two batches, no index naming them
    assert read_index(root).empty
    assert any((root / "chips").rglob("*.tif"))
    assert open_chips(root).sizes["chip"] == 0  # a reader sees nothing uncommitted
    assert open_chips(root / "chips.zarr").sizes["chip"] > 0  # (they are in the cube)
    report = reconcile(root)  # what the next run does first
    assert report.cube_rows_dropped > 0 and not any((root / "chips").rglob("*.tif"))
    with dask.config.set(scheduler="threads"):
        _write(root)
    _assert_same_dataset(root, clean[1])


def test_the_cube_regions_of_two_runs_do_not_overlap(tmp_path):
    _write(tmp_path, dict(list(MANY.items())[:10]))
    _write(tmp_path, dict(list(MANY.items())[10:]))
    raw = open_chips(tmp_path / "chips.zarr")
    ids = [str(c) for c in raw["chip_id"].values]
    assert len(ids) == len(set(ids)) == int(read_index(tmp_path)["qa_pass"].sum())
