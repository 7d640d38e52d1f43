"""`s2xr vacuum` compacts the chip cube: the slots region writes left empty (rejected chips)
are gone from ``chips.zarr``, the dataset reads the same, the cube still takes region writes,
and a compaction a crash interrupts is finished or undone by the next reconcile."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr
from test_worker_writes import MANY, _assert_same_dataset, _dataset, _write

from s2xr.ops.maintenance import vacuum_dataset
from s2xr.store import open_chips, read_index
from s2xr.store.consistency import reconcile
from s2xr.store.layout import DatasetLayout


def _raw_ids(root: Path) -> list[str]:
    return list(np.asarray(zarr.open_array(str(root / "chips.zarr" / "chip_id"), mode="r")[:],
                           dtype=object).astype(str))


def _vacuum(root: Path):
    return vacuum_dataset(root, DatasetLayout(root).ops_db)


def test_vacuum_removes_the_cube_holes_and_the_dataset_reads_the_same(tmp_path):
    _write(tmp_path)
    reconcile(tmp_path)  # (cuts the trailing empty slots; vacuum's own first step)
    before = _dataset(tmp_path)
    ids = _raw_ids(tmp_path)
    holes = ids.count("")
    assert holes > 0  # rejected chips left their slots empty
    assert _vacuum(tmp_path).cube_holes_removed == holes
    raw = xr.open_zarr(tmp_path / "chips.zarr")  # what an ML user opens directly
    assert [str(c) for c in raw["chip_id"].values] == [i for i in ids if i]  # order kept
    _assert_same_dataset(tmp_path, before)
    assert _vacuum(tmp_path).cube_holes_removed == 0  # nothing left to do
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".chips.zarr")]
    # the compacted cube takes the region writes of the next run
    more = {mmsi + 1000: where for mmsi, where in list(MANY.items())[:8]}
    _write(tmp_path, more)
    idx = read_index(tmp_path)
    assert {str(c) for c in open_chips(tmp_path)["chip_id"].values} == \
        set(idx.loc[idx.qa_pass, "chip_id"])
    assert len(idx) == len(MANY) + len(more)


@pytest.mark.parametrize("crash", ["before the old cube is moved aside",
                                   "with the old cube aside"])
def test_a_compaction_a_crash_interrupted_is_undone_or_finished(tmp_path, monkeypatch, crash):
    _write(tmp_path)
    reconcile(tmp_path)
    before = _dataset(tmp_path)
    holes = _raw_ids(tmp_path).count("")
    assert holes > 0
    real = Path.rename
    fail_on = "chips.zarr" if crash.startswith("before") else ".chips.zarr.new"

    def dies(self, target):
        if self.name == fail_on:
            raise OSError("killed")
        return real(self, target)

    monkeypatch.setattr(Path, "rename", dies)
    with pytest.raises(OSError, match="killed"):
        _vacuum(tmp_path)
    monkeypatch.undo()
    if crash.startswith("before"):  # the old cube is whole: the new one is dropped
        assert (tmp_path / ".chips.zarr.new").exists()
        reconcile(tmp_path)
        assert _raw_ids(tmp_path).count("") == holes
    else:  # no cube but a complete new one: it is renamed in
        assert not (tmp_path / "chips.zarr").exists()
        reconcile(tmp_path)
        assert _raw_ids(tmp_path).count("") == 0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".chips.zarr")]
    _assert_same_dataset(tmp_path, before)
