"""Cut chips from a stack's pixels: a vectorized window selection on its Dask array.

Any lazy ``(time, band, y, x)`` DataArray on the chip grid is a stack (s2xr's loader,
stackstac, odc-stac, a Zarr datacube, an in-memory array, a masked or scaled stack): the
chips are *its* values. The graph is built directly from the plan: one task per chip
batch copies its chips straight out of the stack blocks they touch, so a batch depends only
on those blocks and each block is computed once per graph however many chips share it. A
batch ends early rather than hold more than :data:`PIN_BYTES` of blocks at once (chips are
planned in block order, so a batch usually touches few).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dask
import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr

from s2xr.config import ChipSpec
from s2xr.errors import SceneError
from s2xr.scenes.assets import CLASS_BAND
from s2xr.scenes.loader import READ_ERROR_CLASS, read_ahead_task
from s2xr.scenes.stack import to_reflectance

log = logging.getLogger(__name__)

PLAN_GEOMETRY = ("item_id", "x_left", "y_top", "size", "res")


@dataclass(frozen=True)
class StackGrid:
    """Where a stack's pixels are: the outer corner of pixel (0, 0), the pixel size, the
    number of rows and columns."""

    x_left: float
    y_top: float
    res: float
    height: int
    width: int

    def window(self, x_left: np.ndarray, y_top: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Integer (row0, col0) of windows with these top-left corners; raises when the
        corners are not on the stack's pixel edges."""
        c = (x_left - self.x_left) / self.res
        r = (self.y_top - y_top) / self.res
        for name, v in (("x_left", c), ("y_top", r)):
            frac = np.abs(v - np.round(v))
            if len(v) and frac.max() > 1e-3:
                hint = (" (the stack's x/y look like pixel corners, e.g. stackstac's default "
                        "xy_coords='topleft'; build it with pixel-centre coordinates)"
                        if np.allclose(frac, 0.5, atol=1e-3) else "")
                raise SceneError(f"plan {name} is not on the stack's pixel grid{hint}")
        return np.round(r).astype(np.int64), np.round(c).astype(np.int64)


def stack_grid(stack: xr.DataArray) -> StackGrid:
    """The :class:`StackGrid` of a north-up stack whose x/y coords are pixel centres."""
    for dim in ("time", "band", "y", "x"):
        if dim not in stack.dims:
            raise SceneError(f"a stack needs dims (time, band, y, x); this one has "
                             f"{tuple(stack.dims)}")
    x, y = stack["x"].to_numpy().astype(float), stack["y"].to_numpy().astype(float)
    res = float(stack.attrs.get("resolution") or 0) or (
        float(x[1] - x[0]) if len(x) > 1 else float("nan"))
    if len(x) > 1 and not np.allclose(np.diff(x), res, rtol=0, atol=1e-6 * abs(res)):
        raise SceneError("the stack's x coordinate is not a regular grid at its resolution")
    if len(y) > 1 and not np.allclose(np.diff(y), -res, rtol=0, atol=1e-6 * abs(res)):
        raise SceneError("the stack's y coordinate must decrease by one pixel per row "
                         "(north-up)")
    return StackGrid(float(x[0]) - res / 2, float(y[0]) + res / 2, res, len(y), len(x))


def _time_index(stack: xr.DataArray, plan: pd.DataFrame) -> np.ndarray:
    """Stack time index of every plan row: by item ``id`` coord, else by sensing time."""
    if "id" in stack.coords and stack.coords["id"].dims == ("time",):
        pos = {str(v): i for i, v in enumerate(stack.coords["id"].to_numpy())}
        idx = plan["item_id"].astype(str).map(pos)
    else:
        times = pd.DatetimeIndex(stack["time"].to_numpy())
        when = pd.to_datetime(plan["scene_datetime"], utc=True).dt.tz_localize(None)
        idx = pd.Series(times.get_indexer(when), index=plan.index).where(lambda s: s >= 0)
    missing = plan.loc[idx.isna(), "item_id"].astype(str).unique().tolist()
    if missing:
        raise SceneError(f"plan items not in the stack: {missing[:5]}")
    return idx.to_numpy(np.int64)


PIN_BYTES = 256 * 2**20
"""Stack blocks one chip batch may hold at once: a batch ends early rather than exceed it."""


@dataclass(frozen=True)
class _Place:
    """Where one stack block's pixels go in a batch: rows (chip, t, y0, y1, x0, x1, oy, ox)
    in block/chip coordinates, the block-local bands to take and their output bands
    (``nb`` = SCL, always last)."""

    rows: np.ndarray
    bands: np.ndarray
    out_bands: np.ndarray


def _assemble(m: int, nb: int, size: int, places: list[_Place], ahead: list[None],
              *blocks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Chip batch copied straight out of its stack blocks → (reflectance (m, nb, size,
    size) float32, scl uint8, read_error bool). Pixels no block covers are NaN / SCL 0.
    ``ahead``: the results of read-ahead tasks it waited for (nothing to use)."""
    refl = np.empty((m, nb, size, size), np.float32)
    scl = np.zeros((m, size, size), np.uint8)
    err = np.zeros(m, bool)
    covered = np.zeros((m, size, size), bool) if m else None
    full = np.zeros(m, np.int64)
    for place, block in zip(places, blocks, strict=True):
        block = np.asarray(block)
        has_scl = bool(place.out_bands[-1] == nb)
        rb = place.out_bands[:-1] if has_scl else place.out_bands
        src_b = place.bands[:-1] if has_scl else place.bands
        b0, n = (int(src_b[0]), len(src_b)) if len(src_b) else (0, 0)
        src_slice = np.array_equal(src_b, np.arange(b0, b0 + n))
        out_slice = n > 0 and np.array_equal(rb, np.arange(rb[0], rb[0] + n))
        for k, t, y0, y1, x0, x1, oy, ox in place.rows:
            h, w = y1 - y0, x1 - x0
            if n:
                src = (block[t, b0:b0 + n, y0:y1, x0:x1] if src_slice
                       else block[t, src_b, y0:y1, x0:x1])
                if out_slice:
                    refl[k, rb[0]:rb[0] + n, oy:oy + h, ox:ox + w] = src
                else:
                    refl[k, rb, oy:oy + h, ox:ox + w] = src
            if has_scl:
                classes = block[t, int(place.bands[-1]), y0:y1, x0:x1]
                np.copyto(scl[k, oy:oy + h, ox:ox + w], classes, casting="unsafe",
                          where=classes == classes)  # NaN (masked) stays 0 = nodata
                err[k] |= bool((classes == READ_ERROR_CLASS).any())
                if h * w < size * size:
                    covered[k, oy:oy + h, ox:ox + w] = True  # type: ignore[index]
                else:
                    full[k] = 1
    for k in range(m):  # chips partly off the stack: NaN / SCL 0 where no block covers them
        if not full[k]:
            hole = ~covered[k]  # type: ignore[index]
            refl[k][:, hole] = np.nan
            scl[k][hole] = 0
    refl[err] = np.nan
    scl[err] = 0
    return refl, scl, err


def _spans(bounds: np.ndarray, lo: int, hi: int) -> range:
    """Indices of the blocks (edges ``bounds``) overlapping [lo, hi)."""
    return range(int(np.searchsorted(bounds, lo, "right")) - 1,
                 int(np.searchsorted(bounds, hi - 1, "right")))


def _chip_blocks(chunks: tuple[tuple[int, ...], ...], size: int, grid: StackGrid,
                 t: np.ndarray, r0: np.ndarray, c0: np.ndarray
                 ) -> list[list[tuple[tuple[int, int, int], tuple[int, ...]]]]:
    """For every chip: the (time, y, x) stack blocks it touches and the row of each
    (t_local, y0, y1, x0, x1, oy, ox) saying which pixels it takes from that block."""
    tb, _, yb, xb = (np.cumsum((0, *c)) for c in chunks)
    out = []
    for k in range(len(t)):
        rows: list[tuple[tuple[int, int, int], tuple[int, ...]]] = []
        ya, yz = max(int(r0[k]), 0), min(int(r0[k]) + size, grid.height)
        xa, xz = max(int(c0[k]), 0), min(int(c0[k]) + size, grid.width)
        if ya < yz and xa < xz:  # else wholly off the stack: stays NaN / SCL 0
            ti = int(np.searchsorted(tb, t[k], "right")) - 1
            for yi in _spans(yb, ya, yz):
                for xi in _spans(xb, xa, xz):
                    y0, y1 = max(ya, yb[yi]), min(yz, yb[yi + 1])
                    x0, x1 = max(xa, xb[xi]), min(xz, xb[xi + 1])
                    rows.append(((ti, yi, xi), (int(t[k] - tb[ti]), y0 - yb[yi], y1 - yb[yi],
                                                x0 - xb[xi], x1 - xb[xi], y0 - int(r0[k]),
                                                x0 - int(c0[k]))))
        out.append(rows)
    return out


def _batch(blocks: np.ndarray, bb: np.ndarray, band_pos: np.ndarray, nb: int, size: int,
           chips: list[list[tuple[tuple[int, int, int], tuple[int, ...]]]],
           ahead: list[Any]) -> Any:
    """The delayed ``_assemble`` of one chip batch, depending on just the stack blocks its
    chips touch (``blocks``: the stack's Dask array ``to_delayed()``; ``bb``: band edges)
    and on the read-ahead tasks ``ahead`` (started no later than the batch)."""
    per_block: dict[tuple[int, int, int], list[tuple[int, ...]]] = {}
    for k, rows in enumerate(chips):
        for where, row in rows:
            per_block.setdefault(where, []).append((k, *row))
    places, deps = [], []
    for (ti, yi, xi), block_rows in per_block.items():
        spec = np.array(block_rows, dtype=np.int64)
        for bi in range(len(bb) - 1):
            in_block = (band_pos >= bb[bi]) & (band_pos < bb[bi + 1])
            if in_block.any():
                out_bands = np.flatnonzero(in_block)
                places.append(_Place(spec, band_pos[in_block] - bb[bi],
                                     np.where(out_bands == len(band_pos) - 1, nb, out_bands)))
                deps.append(blocks[ti, bi, yi, xi])
    return dask.delayed(_assemble, pure=False, nout=3)(len(chips), nb, size, places, ahead,
                                                       *deps)


def _cut_batches(stack: xr.DataArray, plan: pd.DataFrame, bands: Sequence[str], size: int,
                 res: float, batch_size: int) -> list[tuple[Any, int]]:
    """Delayed chip batches of the ``plan`` rows cut from one stack, with their lengths:
    ``batch_size`` chips, fewer where the stack blocks they hold would exceed
    :data:`PIN_BYTES`."""
    grid = stack_grid(stack)
    if abs(grid.res - res) > 1e-6 * res:
        raise SceneError(f"the stack's pixel is {grid.res} m but the plan's chips are {res} m; "
                         f"stack at resolution={res}")
    have = [str(b) for b in stack["band"].to_numpy()]
    missing = [b for b in (*bands, CLASS_BAND) if b not in have]
    if missing:
        raise SceneError(f"the stack lacks band(s) {missing}; it has {have}")
    band_pos = np.array([have.index(b) for b in (*bands, CLASS_BAND)])
    arr = stack.transpose("time", "band", "y", "x").data
    if not isinstance(arr, da.Array):
        arr = da.from_array(np.asarray(arr), chunks=(1, -1, 1024, 1024))
    t = _time_index(stack, plan)
    r0, c0 = grid.window(plan["x_left"].to_numpy(float), plan["y_top"].to_numpy(float))
    per_chip = _chip_blocks(arr.chunks, size, grid, t, r0, c0)
    block_bytes = (max(arr.chunks[0]) * arr.shape[1] * max(arr.chunks[2]) *
                   max(arr.chunks[3]) * arr.dtype.itemsize)
    blocks = arr.to_delayed()
    bb = np.cumsum((0, *arr.chunks[1]))
    groups: list[tuple[list[Any], set[tuple[int, int, int]]]] = []
    batch: list[Any] = []
    held: set[tuple[int, int, int]] = set()
    for rows in per_chip:
        touched = {where for where, _ in rows}
        if batch and (len(batch) == batch_size or
                      len(held | touched) * block_bytes > PIN_BYTES):
            groups.append((batch, held))
            batch, held = [], set()
        batch.append(rows)
        held |= touched
    if batch:
        groups.append((batch, held))
    # remote COGs under the s2xr loader: each batch's blocks are fetched ahead, many at a
    # time, starting no later than the batch before it is assembled
    ahead = [read_ahead_task(arr, sorted(held)) for _, held in groups]
    out: list[tuple[Any, int]] = []
    for k, (chips, _) in enumerate(groups):
        waits = [a for a in ahead[k:k + 2] if a is not None]
        out.append((_batch(blocks, bb, band_pos, len(bands), size, chips, waits), len(chips)))
    return out


def _as_reflectance(stack: xr.DataArray) -> xr.DataArray:
    if stack.dtype.kind in "ui":
        if "scale" in stack.coords and "offset" in stack.coords:
            return to_reflectance(stack)
        raise SceneError("an integer (DN) stack needs scale/offset coords to become "
                         "reflectance; pass a reflectance stack (s2xr.scenes.stack_scenes)")
    return stack


def plan_geometry(plan: pd.DataFrame) -> tuple[int, float]:
    """(chip size px, resolution m) of a plan (:func:`~s2xr.chips.plan_chips`), one value
    each; raises naming the column when missing or mixed."""
    missing = [c for c in PLAN_GEOMETRY if c not in plan.columns]
    if missing:
        raise SceneError(f"the plan lacks column(s) {missing}; make it with plan_chips")
    sizes, ress = plan["size"].unique(), plan["res"].unique()
    if len(sizes) > 1 or len(ress) > 1:
        raise SceneError(f"one plan holds one chip size and resolution; got sizes "
                         f"{sorted(sizes)}, resolutions {sorted(ress)}")
    return (int(sizes[0]), float(ress[0])) if len(plan) else (ChipSpec().size,
                                                             ChipSpec().resolution)


def cut_chips(stack: xr.DataArray | Mapping[int, xr.DataArray], plan: pd.DataFrame,
              spec: ChipSpec | None = None) -> xr.Dataset:
    """Lazy chips of ``stack``'s pixels for ``plan`` (from :func:`plan_chips`) → ``xr.Dataset``:

    * ``reflectance(chip, band, y, x)`` float32: the stack's reflectance bands (NaN where
      the stack is NaN or the chip runs off it),
    * ``scl(chip, y, x)`` uint8 SCL classes (0 = nodata),
    * ``valid_frac(chip)`` fraction of pixels with data,
    * ``read_error(chip)`` bool: the loader could not read its pixels (all NaN),
    * per-chip coords chip_id, mmsi, time (sensing), item_id, epsg, lon, lat, x_left,
      y_top, tile_id, and ``transform(chip, affine)`` (GDAL order a, b, c, d, e, f).

    ``stack``: a ``(time, band, y, x)`` reflectance stack (see :mod:`s2xr.scenes.stack`; a
    DN stack with scale/offset coords is converted) or ``{epsg: stack}`` (chips go to the
    stack of their plan ``epsg``). Chip size, resolution and window come from the plan
    (columns item_id, x_left, y_top, size, res); ``spec`` gives the bands (default: every
    stack band but ``scl``) and ``batch_size``. Nothing is computed; chunks along ``chip``
    are ``spec.batch_size`` (shorter where the plan changes stack).
    """
    size, res = plan_geometry(plan)
    stacks: dict[int | None, xr.DataArray] = (
        {int(k): v for k, v in stack.items()} if isinstance(stack, Mapping) else {None: stack})
    first = next(iter(stacks.values()))
    bands = tuple(spec.all_bands) if spec is not None else tuple(
        str(b) for b in first["band"].to_numpy() if str(b) != CLASS_BAND)
    batch_size = spec.batch_size if spec is not None else ChipSpec().batch_size
    n = len(plan)
    batches: list[tuple[Any, int]] = []
    key = plan["epsg"].to_numpy() if None not in stacks else np.zeros(n, dtype=np.int64)
    runs = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])  # one stack per run of rows
    for a, z in zip(runs, [*runs[1:], n], strict=True) if n else ():
        k = None if None in stacks else int(key[a])
        if k not in stacks:
            raise SceneError(f"plan chips in EPSG:{k} but no stack for it (have {list(stacks)})")
        batches += _cut_batches(_as_reflectance(stacks[k]), plan.iloc[a:z], bands, size, res,
                                batch_size)
    refl, scl, err = _arrays(batches, len(bands), size)
    ds = _dataset(refl, scl, err, plan, bands, size, res, len(batches))
    # what the stack says about its pixels (a derived stack may have lost its attrs)
    ds.attrs["resampling_20m"] = str(first.attrs.get("resampling", "unknown"))
    ds.attrs["stack_engine"] = str(first.attrs.get("engine", "unknown"))
    return ds


def _arrays(batches: list[tuple[Any, int]], nb: int, size: int
            ) -> tuple[da.Array, da.Array, da.Array]:
    if not batches:
        return (da.from_array(np.empty((0, nb, size, size), np.float32), chunks=-1),
                da.from_array(np.empty((0, size, size), np.uint8), chunks=-1),
                da.from_array(np.empty((0,), bool), chunks=-1))
    refl = da.concatenate([da.from_delayed(task[0], shape=(m, nb, size, size),
                                           dtype=np.float32) for task, m in batches])
    scl = da.concatenate([da.from_delayed(task[1], shape=(m, size, size), dtype=np.uint8)
                          for task, m in batches])
    err = da.concatenate([da.from_delayed(task[2], shape=(m,), dtype=bool)
                          for task, m in batches])
    return refl, scl, err


def _dataset(refl: da.Array, scl: da.Array, err: da.Array, plan: pd.DataFrame,
             bands: Sequence[str], size: int, res: float, n_tasks: int) -> xr.Dataset:
    n = len(plan)
    transform = np.stack([np.full(n, res), np.zeros(n), plan["x_left"].to_numpy(float),
                          np.zeros(n), np.full(n, -res), plan["y_top"].to_numpy(float)], axis=1)
    coords = {
        "chip_id": ("chip", plan["chip_id"].astype(object).to_numpy()),
        "mmsi": ("chip", plan["mmsi"].to_numpy(np.int64)),
        "time": ("chip", pd.to_datetime(plan["scene_datetime"], utc=True).dt.tz_localize(None)
                 .to_numpy("datetime64[ns]")),
        "item_id": ("chip", plan["item_id"].astype(object).to_numpy()),
        "tile_id": ("chip", plan["tile_id"].astype(object).to_numpy()),
        "epsg": ("chip", plan["epsg"].to_numpy(np.int32)),
        "lon": ("chip", plan["lon"].to_numpy(float)),
        "lat": ("chip", plan["lat"].to_numpy(float)),
        "x_left": ("chip", plan["x_left"].to_numpy(float)),
        "y_top": ("chip", plan["y_top"].to_numpy(float)),
        "transform": (("chip", "affine"), transform),
        "band": ("band", np.array(bands, dtype=object)),
    }
    ds = xr.Dataset(
        {"reflectance": (("chip", "band", "y", "x"), refl), "scl": (("chip", "y", "x"), scl)},
        coords=coords,
        attrs={"resolution_m": res, "chip_size": size, "reflectance": "surface reflectance "
               "(L2A DN × scale + offset)", "scl_resampling": "nearest"},
    )
    ds["read_error"] = ("chip", err)
    ds["valid_frac"] = ds["reflectance"].isel(band=0).notnull().mean(("y", "x")).astype(
        np.float32)
    log.info("cut graph: %d chip(s) in %d batch(es)", n, n_tasks)
    return ds
