"""The dataset card (statistics equal NumPy's over the whole cube, in one Dask pass), the lazy
loader, and the training examples of docs/training.md run as written."""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import xarray as xr
import yaml
from click.testing import CliRunner

from pipelines.chip_job import run_chip_job
from pipelines.cli import main
from s2xr.config import build_config
from s2xr.labels import SHIP_CLASSES, ship_class
from s2xr.store import open_chips, read_index
from s2xr.store.card import S2_BANDS, band_statistics
from s2xr.store.labels import read_labels

DOCS = Path(__file__).parent.parent / "docs"


@pytest.fixture(scope="module")
def carded(world, stac_server, tmp_path_factory):
    root = tmp_path_factory.mktemp("card")
    cfg = build_config({"stac": {"api_url": stac_server.url, "collection": "sentinel-2-l2a",
                                 "window_hours": 6},
                        "storage": {"root": str(root), "write_geotiff": False}},
                       environ={}, dotenv_path=None)
    run_chip_job(cfg, world.ais_path)
    res = CliRunner().invoke(main, ["dataset-card", "--out", str(root)])
    assert res.exit_code == 0, res.output
    return root, yaml.safe_load((root / "dataset.yaml").read_text())


def test_band_statistics_equal_numpy_over_the_whole_cube(carded):
    root, card = carded
    cube = open_chips(root)
    refl = cube.reflectance.values.astype(np.float64)
    assert [b["name"] for b in card["bands"]] == list(cube.band.values)
    got = {k: np.array([b[k] for b in card["bands"]]) for k in ("mean", "std", "min", "max")}
    np.testing.assert_allclose(got["mean"], np.nanmean(refl, axis=(0, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(got["std"], np.nanstd(refl, axis=(0, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(got["min"], np.nanmin(refl, axis=(0, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(got["max"], np.nanmax(refl, axis=(0, 2, 3)), rtol=1e-5)
    valid = np.isfinite(refl).sum(axis=(0, 2, 3))
    assert [b["valid_pixels"] for b in card["bands"]] == valid.tolist()


def test_band_statistics_read_each_chunk_once():
    """One streaming pass: every source chunk is produced exactly once for all statistics."""
    calls: list[tuple[int, ...]] = []
    lock = threading.Lock()

    def block(x: np.ndarray, block_info=None) -> np.ndarray:
        with lock:
            calls.append(tuple(block_info[None]["chunk-location"]))
        rng = np.random.default_rng(sum(block_info[None]["chunk-location"]))
        out = rng.normal(0.05, 0.02, x.shape).astype(np.float32)
        out[..., :3, :3] = np.nan
        return out

    src = da.zeros((12, 3, 16, 16), chunks=(4, 3, 16, 16), dtype=np.float32)
    arr = src.map_blocks(block, dtype=np.float32)
    ds = xr.Dataset({"reflectance": (("chip", "band", "y", "x"), arr)},
                    coords={"band": ["blue", "green", "red"]})
    stats = band_statistics(ds)
    assert sorted(calls) == sorted(set(calls)) and len(calls) == arr.npartitions
    ref = arr.compute().astype(np.float64)
    np.testing.assert_allclose(stats["mean"], np.nanmean(ref, axis=(0, 2, 3)), rtol=1e-10)
    np.testing.assert_allclose(stats["std"], np.nanstd(ref, axis=(0, 2, 3)), rtol=1e-10)


def test_card_contents(carded):
    root, card = carded
    idx = read_index(root)
    passed = idx.loc[idx.qa_pass]
    labels = read_labels(root)
    cube = open_chips(root)
    assert card["cube"]["n_chips"] == cube.sizes["chip"] == len(passed)
    assert card["chip"]["size_px"] == cube.sizes["x"] and card["chip"]["gsd_m"] == 10.0
    for b in card["bands"]:
        s2, wl, fwhm, gsd = S2_BANDS[b["name"]]
        assert (b["s2_band"], b["center_wavelength_um"], b["fwhm_um"],
                b["native_gsd_m"]) == (s2, wl, fwhm, gsd)
    assert "reflectance" in card["reflectance"]["definition"].lower()
    assert sum(card["splits"]["chips"].values()) == len(passed)
    assert card["splits"]["chips"] == passed.split.value_counts().to_dict()
    assert card["splits"]["leakage"]["vessels"]["n_shared"] == 0
    expect = passed.ship_type.map(ship_class).value_counts().to_dict()
    assert card["classes"]["chips_by_class"] == expect
    assert set(expect) <= set(SHIP_CLASSES)
    assert sum(card["labels"]["instances_by_class"].values()) == len(labels)
    md = (root / "DATASET.md").read_text()
    for b in card["bands"]:
        assert f"| {b['name']} |" in md
    assert "ship_mask" in md and "Leakage" in md


def test_open_chips_is_lazy_and_selects_splits(carded):
    root, _ = carded
    ds = open_chips(root)
    assert isinstance(ds.reflectance.data, da.Array) and isinstance(ds.ship_mask.data, da.Array)
    assert ds.reflectance.dims == ("chip", "band", "y", "x")
    assert ds.ship_mask.dims == ds.scl.dims == ("chip", "y", "x")
    n = 0
    for split in ("train", "val", "test"):
        sub = open_chips(root, split=split)
        assert isinstance(sub.reflectance.data, da.Array)
        assert set(sub.split.values) <= {split}
        n += sub.sizes["chip"]
    assert n == ds.sizes["chip"]


def _example(name: str) -> str:
    text = (DOCS / "training.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    found = [b for b in blocks if b.startswith(f"# example: {name}\n")]
    assert len(found) == 1, f"docs/training.md: no single '# example: {name}' block"
    return found[0]


@pytest.mark.parametrize("name", ["xbatcher", "pytorch"])
def test_training_examples_run(carded, name, monkeypatch, capsys):
    root, _ = carded
    monkeypatch.setitem(os.environ, "S2XR_DATASET", str(root))
    code = _example(name)
    scope: dict = {"__name__": "docs_example"}
    exec(compile(code, f"docs/training.md:{name}", "exec"), scope)
    out = capsys.readouterr().out
    n_train = open_chips(root, split="train").sizes["chip"]
    if name == "xbatcher":
        assert scope["n_seen"] == n_train // 8 * 8  # xbatcher yields complete batches only
        assert scope["x"].shape[1:] == (len(scope["mean"][0]), 256, 256)
        assert np.isfinite(scope["x"]).all()
        assert f"{scope['n_seen']} training chips" in out
    else:
        assert len(scope["chips"]) == n_train
        assert scope["image"].dtype == np.float32 and scope["mask"].dtype == np.uint8
