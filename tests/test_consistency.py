"""reconcile() repairs a cube left half-written by a crash at any point of an append."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
import zarr

from s2xr.errors import StorageError
from s2xr.store.consistency import _truncate_cube
from s2xr.store.cube import CUBE_NAME, append_cube, open_chips


def chips(ids: list[str]) -> xr.Dataset:
    n = len(ids)
    rng = np.random.default_rng(len(ids))
    return xr.Dataset(
        {"reflectance": (("chip", "band", "y", "x"), rng.random((n, 2, 8, 8), np.float32)),
         "scl": (("chip", "y", "x"), np.full((n, 8, 8), 6, np.uint8)),
         "qa_pass": (("chip",), np.ones(n, bool))},
        coords={"chip_id": ("chip", np.array(ids, dtype=object)), "band": ["red", "nir"]})


def test_half_done_append_is_cut_back_in_every_array(tmp_path):
    append_cube(tmp_path, chips(["a", "b", "c", "d"]))
    append_cube(tmp_path, chips(["e", "f", "g"]))
    group = zarr.open_group(str(tmp_path / CUBE_NAME), mode="r+")
    group["reflectance"].resize((5, 2, 8, 8))  # killed after resizing some arrays only
    dropped = _truncate_cube(tmp_path, {"a", "b", "c", "d"})
    assert dropped == 3
    ds = open_chips(tmp_path / CUBE_NAME)
    assert list(ds.chip_id.values) == ["a", "b", "c", "d"]
    assert {ds[v].shape[0] for v in ("reflectance", "scl", "qa_pass")} == {4}
    append_cube(tmp_path, chips(["e", "f"]))  # the next append works
    assert list(open_chips(tmp_path / CUBE_NAME).chip_id.values) == ["a", "b", "c", "d", "e", "f"]


def test_chip_id_shorter_than_the_data_arrays(tmp_path):
    append_cube(tmp_path, chips(["a", "b"]))
    append_cube(tmp_path, chips(["c"]))
    zarr.open_group(str(tmp_path / CUBE_NAME), mode="r+")["chip_id"].resize((2,))
    assert _truncate_cube(tmp_path, {"a", "b"}) == 1
    assert open_chips(tmp_path / CUBE_NAME).sizes["chip"] == 2


def test_first_write_killed_before_any_array(tmp_path):
    zarr.open_group(str(tmp_path / CUBE_NAME), mode="w", zarr_format=3)
    assert _truncate_cube(tmp_path, set()) == 0
    assert not (tmp_path / CUBE_NAME).exists()
    append_cube(tmp_path, chips(["a"]))
    assert open_chips(tmp_path / CUBE_NAME).sizes["chip"] == 1


def test_damaged_cube_the_index_relies_on_is_an_error(tmp_path):
    zarr.open_group(str(tmp_path / CUBE_NAME), mode="w", zarr_format=3)
    with pytest.raises(StorageError, match="rebuild"):
        _truncate_cube(tmp_path, {"a"})


def _open_as_a_user(root) -> xr.Dataset:
    """What a user types first: xr.open_zarr on the cube, every warning an error."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return xr.open_zarr(root / CUBE_NAME)


def test_the_cube_opens_with_xarray_without_a_warning(tmp_path):
    """Consolidated metadata, rewritten after every append and repair: xr.open_zarr opens
    the cube without the "no consolidated metadata" warning and sees its current shape."""
    append_cube(tmp_path, chips(["a", "b", "c"]))
    assert list(_open_as_a_user(tmp_path).chip_id.values) == ["a", "b", "c"]
    append_cube(tmp_path, chips(["d", "e"]))
    ds = _open_as_a_user(tmp_path)
    assert ds.sizes["chip"] == 5 and ds.reflectance.shape == (5, 2, 8, 8)
    assert _truncate_cube(tmp_path, {"a", "b", "c", "d"}) == 1  # trailing row cut
    assert list(_open_as_a_user(tmp_path).chip_id.values) == ["a", "b", "c", "d"]
    before = open_chips(tmp_path / CUBE_NAME).reflectance.values
    # a row in the middle of a slotted cube (how s2xr writes cubes) becomes a hole
    assert _truncate_cube(tmp_path, {"a", "c", "d"}) == 1
    assert list(_open_as_a_user(tmp_path).chip_id.values) == ["a", "", "c", "d"]
    ds = open_chips(tmp_path / CUBE_NAME)
    assert list(ds.chip_id.values) == ["a", "c", "d"]
    np.testing.assert_array_equal(ds.reflectance.values, before[[0, 2, 3]])


@pytest.mark.filterwarnings("ignore:The data type",
                            "ignore:Consolidated metadata:UserWarning")
def test_a_cube_from_before_slots_is_rewritten_slotted(tmp_path):
    """A cube appended before region writes existed (1-D arrays chunked by the first write,
    no slots attribute): a row in the middle is removed by rewriting the cube, which then
    takes region writes."""
    from s2xr.store.slots import SLOTS_ATTR, slotted

    old = chips(["a", "b", "c"])
    old.to_zarr(tmp_path / CUBE_NAME, zarr_format=3, consolidated=True)
    assert slotted(tmp_path) is None
    assert _truncate_cube(tmp_path, {"a", "c"}) == 1
    assert list(_open_as_a_user(tmp_path).chip_id.values) == ["a", "c"]
    np.testing.assert_array_equal(open_chips(tmp_path / CUBE_NAME).reflectance.values,
                                  old.reflectance.values[[0, 2]])
    assert slotted(tmp_path) == zarr.open_group(str(tmp_path / CUBE_NAME)).attrs[SLOTS_ATTR]
