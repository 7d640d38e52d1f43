"""Cube slots: how many writers (the Dask tasks that cut the chips) write one Zarr cube at once.

The client *reserves* slots at the end of the cube before a run — a metadata-only resize of
every ``chip`` array — and gives each chip batch its own region of whole chunks
(:attr:`CubeSlots.per_batch` slots, a multiple of every ``chip`` chunk), so no two writers
ever touch the same Zarr object. A task writes its passed chips at the start of its region;
the rest of the region stays fill (``chip_id`` ``""``): a *hole*. Holes and chips no index
row names are never shown by :func:`s2xr.store.open_chips` (the index is the commit record:
see docs/formats.md, "Commit protocol"). A cube written before slots existed (its ``chip``
arrays not chunked by region) is appended by the client instead (:func:`slotted` is False).
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import xarray as xr

from s2xr.store.objects import cube_at, has_zarr

log = logging.getLogger(__name__)

SLOTS_ATTR = "s2xr_slots_per_batch"
"""Cube attribute: the region size its 1-D ``chip`` arrays are chunked by."""
CHIPS_PER_CHUNK = 8  # 8 chips × 5–6 bands ≈ 12 MB per chunk; Blosc-LZ4 + byte shuffle
_OBJ_COORDS = ("chip_id", "item_id", "tile_id", "band", "split", "qa_reason")
PIXEL_VARS = ("reflectance", "scl", "ship_mask")


@dataclass(frozen=True)
class CubeSlots:
    """Slots reserved for one run: batch ``k`` owns ``[start + k·per_batch, … + per_batch)``."""

    path: str | Path  # the cube: a local path or an object store URL
    start: int
    per_batch: int
    n_batches: int

    def region(self, k: int) -> int:
        """First slot of batch ``k``."""
        if not 0 <= k < self.n_batches:
            raise IndexError(f"batch {k} outside the {self.n_batches} reserved")
        return self.start + k * self.per_batch


def drop_stored_encoding(ds: xr.Dataset) -> xr.Dataset:
    """``ds`` (opened from a cube) with each variable's encoding cut to ``units`` and
    ``dtype``, in place, so writing it elsewhere takes the new cube's chunks and codecs."""
    for v in ds.variables.values():
        v.encoding = {k: e for k, e in v.encoding.items() if k in ("units", "dtype")}
    return ds


def prepare(ds: xr.Dataset) -> xr.Dataset:
    """``ds`` with its text coords as variable-length strings (what Zarr stores them as;
    marked so, an empty array is text too)."""
    from xarray.coding.strings import create_vlen_dtype

    text = create_vlen_dtype(str)
    out = ds.copy()
    for name in _OBJ_COORDS:
        if name in out.variables:
            out[name] = out[name].astype(text)
    return out


def slot_encoding(ds: xr.Dataset, per_batch: int) -> dict[str, dict[str, Any]]:
    """Zarr encoding of a slotted cube: pixel arrays in chunks of :data:`CHIPS_PER_CHUNK`
    chips (Blosc-LZ4, byte shuffle), every other ``chip`` array in chunks of ``per_batch``."""
    from zarr.codecs import BloscCodec

    fast = (BloscCodec(cname="lz4", clevel=5, shuffle="shuffle"),)
    enc: dict[str, dict[str, Any]] = {}
    for name, var in ds.variables.items():
        if "chip" not in var.dims:
            continue
        lead = CHIPS_PER_CHUNK if name in PIXEL_VARS else per_batch
        enc[str(name)] = {"chunks": (lead, *var.shape[1:])}
        if name in PIXEL_VARS:
            enc[str(name)]["compressors"] = fast
    if "time" in enc:
        enc["time"].update(units="milliseconds since 1970-01-01", dtype="int64")
    return enc


def slots_per_batch(batch_size: int) -> int:
    """Slots of one batch's region: ``batch_size`` rounded up to whole pixel chunks."""
    return CHIPS_PER_CHUNK * math.ceil(max(1, batch_size) / CHIPS_PER_CHUNK)


def _group(path: str | Path, mode: Literal["r", "r+"] = "r", *,
           consolidated: bool = False) -> Any:
    """The cube's Zarr group: its arrays' own metadata (always current), or with
    ``consolidated`` the consolidated copy in the root metadata (one read instead of two
    per array: what a region writer uses, which the client consolidated after reserving
    the regions)."""
    import zarr

    return zarr.open_group(str(path), mode=mode, use_consolidated=consolidated)


def slotted(root: str | Path) -> int | None:
    """The region size of the cube under ``root`` when it takes region writes (absent cubes
    included: 0), else ``None`` (a cube appended before slots existed)."""
    path = cube_at(root)
    if not has_zarr(path):
        return 0
    value = _group(path).attrs.get(SLOTS_ATTR)
    return int(value) if value else None


def create_cube(root: str | Path, first: xr.Dataset, per_batch: int) -> str | Path:
    """Create a slotted cube (regions of ``per_batch`` slots) holding the computed chips
    ``first`` (none: an empty cube with ``first``'s variables, dtypes and bands). Raises if
    a cube exists."""
    path = cube_at(root)
    ds = write_new_cube(path, first, per_batch)
    log.info("cube %s created: %d chip(s), regions of %d slots", path, ds.sizes["chip"],
             per_batch)
    return path


def write_new_cube(path: str | Path, chips: xr.Dataset, per_batch: int) -> xr.Dataset:
    """Write computed ``chips`` as a new slotted cube at ``path`` (consolidated) → what was
    written. Raises if ``path`` exists."""
    ds = prepare(chips)
    ds.attrs[SLOTS_ATTR] = per_batch
    ds.to_zarr(path, mode="w-", encoding=slot_encoding(ds, per_batch), zarr_format=3,
               consolidated=False)
    consolidate(path)
    return ds


def _resize(path: str | Path, length: int) -> None:
    for _, arr in _group(path, "r+").arrays():
        dims = arr.metadata.dimension_names or ()
        if dims and dims[0] == "chip" and arr.shape[0] != length:
            arr.resize((length, *arr.shape[1:]))


def cube_length(root: str | Path) -> int:
    """Slots in the cube under ``root`` (0 without a cube)."""
    path = cube_at(root)
    if not has_zarr(path):
        return 0
    return int(_group(path)["chip_id"].shape[0])


def reserve_slots(root: str | Path, n_batches: int, per_batch: int) -> CubeSlots:
    """Client: grow the slotted cube under ``root`` by ``n_batches`` regions of ``per_batch``
    slots (metadata only: every ``chip`` array is resized; nothing is written into them)
    and consolidate its metadata → the slots. The cube must exist, slotted, with
    ``per_batch`` a multiple of its region size."""
    path = cube_at(root)
    have = slotted(root)
    if not have or per_batch % have:
        raise ValueError(f"cube {path} takes regions of {have} slots, not {per_batch}")
    length = cube_length(root)
    start = per_batch * math.ceil(length / per_batch)
    _resize(path, start + n_batches * per_batch)
    consolidate(path)
    return CubeSlots(path=path, start=start, per_batch=per_batch, n_batches=n_batches)


def known_variables(path: str | Path, ds: xr.Dataset, *, consolidated: bool = False
                    ) -> tuple[xr.Dataset, set[str]]:
    """``ds`` without the data variables the cube at ``path`` lacks (logged: Zarr cannot add
    a variable along ``chip`` to an existing cube), and the names of the cube's arrays
    (from its consolidated metadata with ``consolidated``)."""
    have = set(_group(path, consolidated=consolidated).array_keys())
    extra = [v for v in ds.data_vars if v not in have]
    if extra:
        log.warning("cube %s has no %s: not written (rebuild the cube to add them)", path,
                    extra)
        ds = ds.drop_vars(extra)
    return ds, have


def write_region(slots: CubeSlots, k: int, chips: xr.Dataset) -> None:
    """Worker: write computed ``chips`` (at most ``slots.per_batch``) into batch ``k``'s region
    of the cube, from its first slot. Only this batch writes these chunks."""
    n = chips.sizes.get("chip", 0)
    if n == 0:
        return
    if n > slots.per_batch:
        raise ValueError(f"{n} chips do not fit a region of {slots.per_batch} slots")
    a = slots.region(k)
    # (a cube's ship_mask that these chips lack stays 0 in the region: background)
    # the metadata consolidated when the regions were reserved: one read, not two per
    # array (≈ 190 requests per batch to an object store)
    ds, have = known_variables(slots.path, prepare(chips), consolidated=True)
    ds = ds.drop_vars([v for v in ds.variables if "chip" not in ds[v].dims or v not in have])
    ds.attrs = {}
    import zarr

    # a region holds chips, never an all-fill chunk: skip zarr's per-chunk emptiness scan
    with zarr.config.set({"array.write_empty_chunks": True}):
        ds.to_zarr(slots.path, region={"chip": slice(a, a + n)}, mode="r+", zarr_format=3,
                   consolidated=True, safe_chunks=False)


def consolidate(path: str | Path) -> None:
    """Write the consolidated metadata of the Zarr v3 store at ``path`` (after any change to
    its arrays: readers that use it see the shapes it records)."""
    import zarr

    with warnings.catch_warnings():  # "not part of the Zarr v3 specification (yet)"
        warnings.filterwarnings("ignore", message="Consolidated metadata",
                                category=UserWarning)
        zarr.consolidate_metadata(str(path), zarr_format=3)
