"""Cut chips from a stack's pixels: a vectorized window selection on its Dask array.

Any lazy ``(time, band, y, x)`` DataArray on the chip grid is a stack (s2xr's loader,
stackstac, odc-stac, a Zarr datacube, an in-memory array, a masked or scaled stack): the
chips are *its* values. The graph is built directly from the plan: for every chip batch
and every stack block its chips touch, one small task copies the chips' parts out of the
block; one task per batch assembles them. A block is therefore computed once per graph
however many chips share it, and released as soon as its parts are copied; a batch
depends only on the blocks it touches.
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
from s2xr.scenes.loader import READ_ERROR_CLASS
from s2xr.scenes.stack import to_reflectance

log = logging.getLogger(__name__)

PLAN_GEOMETRY = ("item_id", "x_left", "y_top", "size", "res")


@dataclass(frozen=True)
class StackGrid:
    """Where a stack's pixels are: edges of pixel (0, 0), pixel size, time index of items."""

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


def _take_parts(block: np.ndarray, where: np.ndarray, bands: np.ndarray) -> list[np.ndarray]:
    """Copy chip parts out of one stack block: ``where`` rows (t, y0, y1, x0, x1) in block
    coordinates; ``bands`` the block-local band indices wanted."""
    block = np.asarray(block)
    b0 = int(bands[0])
    if np.array_equal(bands, np.arange(b0, b0 + len(bands))):  # a slice: one copy
        sel: slice | np.ndarray = slice(b0, b0 + len(bands))
        return [block[t, sel, y0:y1, x0:x1].astype(np.float32, copy=True)
                for t, y0, y1, x0, x1 in where]
    return [np.asarray(block[t, bands, y0:y1, x0:x1], dtype=np.float32)  # fancy: a copy
            for t, y0, y1, x0, x1 in where]


def _assemble(m: int, nb: int, size: int, places: list[tuple[np.ndarray, np.ndarray]],
              *parts: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Chip batch from parts → (reflectance (m, nb, size, size) float32, scl uint8,
    read_error bool). ``places[i]``: rows (chip, oy, ox) for part list i and the output band
    of each of its bands (nb = SCL). Pixels no part covers are NaN / SCL 0."""
    refl = np.empty((m, nb, size, size), np.float32)
    scl = np.zeros((m, size, size), np.uint8)
    err = np.zeros(m, bool)
    covered = np.zeros(m, np.int64)  # pixels of each chip the parts cover (parts are disjoint)
    for (where, out_bands), plist in zip(places, parts, strict=True):
        # a part's bands come in output order, so SCL (output band nb) is its last band
        has_scl = bool(out_bands[-1] == nb)
        rb = out_bands[:-1] if has_scl else out_bands
        contiguous = len(rb) > 0 and np.array_equal(rb, np.arange(rb[0], rb[0] + len(rb)))
        for (k, oy, ox), part in zip(where, plist, strict=True):
            h, w = part.shape[1:]
            if contiguous:
                refl[k, rb[0]:rb[0] + len(rb), oy:oy + h, ox:ox + w] = part[:len(rb)]
            elif len(rb):
                refl[k, rb, oy:oy + h, ox:ox + w] = part[:len(rb)]
            if has_scl:
                classes = part[len(rb)]
                np.copyto(scl[k, oy:oy + h, ox:ox + w], classes, casting="unsafe",
                          where=classes == classes)  # NaN (masked) stays 0 = nodata
                err[k] |= bool((classes == READ_ERROR_CLASS).any())
                covered[k] += h * w
    for k in np.flatnonzero(covered < size * size):  # partly off the stack: NaN around
        _fill_uncovered(refl[k], scl[k], places, parts, int(k))
    refl[err] = np.nan
    scl[err] = 0
    return refl, scl, err


def _fill_uncovered(refl: np.ndarray, scl: np.ndarray,
                    places: list[tuple[np.ndarray, np.ndarray]], parts: tuple[Any, ...],
                    k: int) -> None:
    """NaN the reflectance of chip ``k`` wherever no part covers it."""
    mask = np.ones(scl.shape, bool)
    for (where, _), plist in zip(places, parts, strict=True):
        for (kk, oy, ox), part in zip(where, plist, strict=True):
            if kk == k:
                mask[oy:oy + part.shape[1], ox:ox + part.shape[2]] = False
    refl[:, mask] = np.nan
    scl[mask] = 0


def _spans(bounds: np.ndarray, lo: int, hi: int) -> range:
    """Indices of the blocks (edges ``bounds``) overlapping [lo, hi)."""
    return range(int(np.searchsorted(bounds, lo, "right")) - 1,
                 int(np.searchsorted(bounds, hi - 1, "right")))


def _batch(blocks: np.ndarray, chunks: tuple[tuple[int, ...], ...], band_pos: np.ndarray,
           nb: int, size: int, t: np.ndarray, r0: np.ndarray, c0: np.ndarray,
           grid: StackGrid) -> Any:
    """The delayed ``_assemble`` of one chip batch (chips ``t, r0, c0`` in stack pixels)
    from the stack's ``blocks`` (its Dask array's ``to_delayed()``)."""
    tb, bb, yb, xb = (np.cumsum((0, *c)) for c in chunks)
    parts: dict[tuple[int, int, int], list[tuple[int, ...]]] = {}
    for k in range(len(t)):
        ya, yz = max(int(r0[k]), 0), min(int(r0[k]) + size, grid.height)
        xa, xz = max(int(c0[k]), 0), min(int(c0[k]) + size, grid.width)
        if ya >= yz or xa >= xz:
            continue  # wholly off the stack: stays NaN / SCL 0
        ti = int(np.searchsorted(tb, t[k], "right")) - 1
        for yi in _spans(yb, ya, yz):
            for xi in _spans(xb, xa, xz):
                y0, y1 = max(ya, yb[yi]), min(yz, yb[yi + 1])
                x0, x1 = max(xa, xb[xi]), min(xz, xb[xi + 1])
                parts.setdefault((ti, yi, xi), []).append(
                    (k, int(t[k] - tb[ti]), y0 - yb[yi], y1 - yb[yi], x0 - xb[xi],
                     x1 - xb[xi], y0 - int(r0[k]), x0 - int(c0[k])))
    places, taken = [], []
    for (ti, yi, xi), rows in parts.items():
        spec = np.array(rows, dtype=np.int64)
        for bi in range(len(bb) - 1):
            in_block = (band_pos >= bb[bi]) & (band_pos < bb[bi + 1])
            if not in_block.any():
                continue
            taken.append(dask.delayed(_take_parts, pure=True)(
                blocks[ti, bi, yi, xi], spec[:, 1:6], band_pos[in_block] - bb[bi]))
            out_bands = np.flatnonzero(in_block)
            places.append((spec[:, [0, 6, 7]],
                           np.where(out_bands == len(band_pos) - 1, nb, out_bands)))
    return dask.delayed(_assemble, pure=True, nout=3)(len(t), nb, size, places, *taken)


def _cut_batches(stack: xr.DataArray, plan: pd.DataFrame, bands: Sequence[str], size: int,
                 res: float, batch_size: int) -> list[tuple[Any, int]]:
    """Delayed chip batches of the ``plan`` rows cut from one stack, with their lengths."""
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
    blocks = arr.to_delayed()
    return [(_batch(blocks, arr.chunks, band_pos, len(bands), size, t[s:s + batch_size],
                    r0[s:s + batch_size], c0[s:s + batch_size], grid),
             len(t[s:s + batch_size])) for s in range(0, len(plan), batch_size)]


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
