"""Lazy stacks of Sentinel-2 items: the contract every later stage reads pixels from.

A stack is ``xr.DataArray(time, band, y, x)`` of float32 *surface reflectance* (DN × scale +
offset, NaN for nodata) for the reflectance bands, then the ``scl`` class band (class values
as float32, 0 = nodata), on the items' native 10 m grid in one UTM CRS; x/y are pixel
*centres*; coords ``id`` (item id) on time. Three engines build it (``stac.engine``):

* ``s2xr`` (default): :mod:`s2xr.scenes.loader`, blocks read straight from the COGs,
  decoded once per process and resampled in GIL-free kernels; read errors mark the block
  (SCL :data:`~s2xr.scenes.loader.READ_ERROR_CLASS`) instead of failing;
* ``stackstac`` and ``odc-stac``: those libraries' readers (GDAL warping), converted to
  reflectance lazily with :func:`to_reflectance`.

Anything with the same dims can stand in for a stack (a Zarr datacube, an in-memory array,
a masked or scaled stack): :func:`s2xr.chips.cut_chips` cuts from its pixels.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr
from rasterio.enums import Resampling

from s2xr.errors import SceneError
from s2xr.scenes.assets import CLASS_BAND, SceneAssets, scene_assets

log = logging.getLogger(__name__)

ENGINES = ("s2xr", "stackstac", "odc-stac")
_RS = {"bilinear": Resampling.bilinear, "cubic": Resampling.cubic,
       "nearest": Resampling.nearest}


def _scale_offset_coords(arr: xr.DataArray, assets: SceneAssets) -> xr.DataArray:
    """Per-(time, band) ``scale``/``offset`` coords of a DN stack (SCL: 1 and 0)."""
    ids = [str(i) for i in arr.coords["id"].values]
    bands = [str(b) for b in arr.band.values]
    scale = np.ones((len(ids), len(bands)))
    offset = np.zeros((len(ids), len(bands)))
    for t, iid in enumerate(ids):
        row = assets.table.loc[iid]
        for b, band in enumerate(bands):
            if band != CLASS_BAND:
                k = assets.bands.index(band)
                scale[t, b], offset[t, b] = row["scales"][k], row["offsets"][k]
    return arr.assign_coords(scale=(("time", "band"), scale), offset=(("time", "band"), offset))


def _stackstac(items: Sequence[dict[str, Any]], bands: Sequence[str], epsg: int,
               resolution: float, resampling: Resampling, chunksize: int) -> xr.DataArray:
    import stackstac

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Use `@` matmul", category=Warning)
        return stackstac.stack(list(items), assets=list(bands), epsg=epsg,
                               resolution=resolution, resampling=resampling,
                               dtype=np.dtype("uint16"), fill_value=np.uint16(0), rescale=False,
                               chunksize=chunksize, xy_coords="center", properties=False,
                               band_coords=False)


def _odc(items: Sequence[dict[str, Any]], bands: Sequence[str], epsg: int, resolution: float,
         resampling: str, chunksize: int) -> xr.DataArray:
    import odc.stac
    import pystac

    pitems = [pystac.Item.from_dict(it) for it in items]
    ds = odc.stac.load(pitems, bands=list(bands), crs=f"EPSG:{epsg}", resolution=resolution,
                       resampling={b: ("nearest" if b == CLASS_BAND else resampling)
                                   for b in bands},
                       dtype="uint16", nodata=0, chunks={"x": chunksize, "y": chunksize},
                       groupby="id")
    arr = ds[list(bands)].to_array("band").transpose("time", "band", "y", "x")
    return arr.assign_coords(id=("time", [it.id for it in pitems]))


def _library_stack(engine: str, assets: SceneAssets, epsg: int, resolution: float,
                   resampling: str, chunksize: int) -> xr.DataArray:
    group = assets.subset(epsg=epsg)
    refl = list(group.bands)
    if engine == "stackstac":
        r = _stackstac(group.items, refl, epsg, resolution, _RS[resampling], chunksize)
        s = _stackstac(group.items, [CLASS_BAND], epsg, resolution, Resampling.nearest,
                       chunksize)
        dn = xr.concat([r, s], dim="band", coords="minimal", compat="override",
                       join="override")
    else:
        dn = _odc(group.items, [*refl, CLASS_BAND], epsg, resolution, resampling, chunksize)
    keep = {"time", "band", "x", "y", "id"}
    dn = dn.drop_vars([c for c in dn.coords if c not in keep])
    return to_reflectance(_scale_offset_coords(dn, assets)).drop_vars(["scale", "offset"])


def stack_by_epsg(items: Sequence[dict[str, Any]] | SceneAssets, bands: Sequence[str] = (),
                  *, resolution: float = 10, resampling: str = "bilinear",
                  engine: str = "s2xr", chunksize: int | None = None, io_threads: int = 16,
                  read_timeout_s: float = 30.0) -> dict[int, xr.DataArray]:
    """``{epsg: DataArray(time, band, y, x)}`` reflectance stacks (see the module docstring),
    lazy: no pixel is read. ``items`` are STAC item dicts (then ``bands`` names the
    reflectance asset keys; ``scl`` is appended) or a :class:`SceneAssets`. ``chunksize``:
    y/x block edge (default 512 for the s2xr loader, 2048 for stackstac/odc-stac).
    ``io_threads``: range requests in flight per process when the s2xr loader reads remote
    COGs; ``read_timeout_s``: seconds one such request may take before it is retried."""
    from s2xr.scenes.loader import load_stack

    if engine not in ENGINES:
        raise SceneError(f"stac.engine {engine!r}: use one of {list(ENGINES)}")
    assets = items if isinstance(items, SceneAssets) else scene_assets(items, bands)
    out: dict[int, xr.DataArray] = {}
    for epsg in assets.epsgs:
        if engine == "s2xr":
            arr = load_stack(assets, epsg, resolution=resolution, resampling=resampling,
                             chunksize=chunksize or 512, io_threads=io_threads,
                             read_timeout_s=read_timeout_s)
        else:
            arr = _library_stack(engine, assets, epsg, resolution, resampling,
                                 chunksize or 2048)
        arr.attrs.update({"epsg": epsg, "crs": f"EPSG:{epsg}", "resolution": resolution,
                          "engine": engine, "resampling": resampling,
                          "units": "surface reflectance; scl: SCL class"})
        out[epsg] = arr.rename(f"s2_l2a_{epsg}")
        if engine != "s2xr":
            log.info("stack EPSG:%d (%s): %d item(s) × %d band(s), %d×%d px (lazy)", epsg,
                     engine, arr.sizes["time"], arr.sizes["band"], arr.sizes["y"],
                     arr.sizes["x"])
    return out


def stack_scenes(items: Sequence[dict[str, Any]] | SceneAssets, bands: Sequence[str] = (),
                 resolution: float = 10, *, resampling: str = "bilinear", engine: str = "s2xr",
                 epsg: int | None = None, chunksize: int | None = None) -> xr.DataArray:
    """One lazy reflectance ``DataArray(time, band, y, x)`` for items in one UTM CRS (see the
    module docstring for its contract).

    With items in several CRSs pass ``epsg=`` to choose one (or use :func:`stack_by_epsg`).
    Does not compute.
    """
    stacks = stack_by_epsg(items, bands, resolution=resolution, resampling=resampling,
                           engine=engine, chunksize=chunksize)
    if epsg is not None:
        if epsg not in stacks:
            raise SceneError(f"no item in EPSG:{epsg}; items are in {sorted(stacks)}")
        return stacks[epsg]
    if len(stacks) != 1:
        raise SceneError(f"items span several CRSs {sorted(stacks)}: pass epsg= or use "
                         "stack_by_epsg")
    return next(iter(stacks.values()))


def to_reflectance(stack: xr.DataArray) -> xr.DataArray:
    """Lazy float32 reflectance from a DN stack with ``scale``/``offset`` coords (time, band):
    DN × scale + offset, DN 0 → NaN; the ``scl`` band keeps its class values."""
    for coord in ("scale", "offset"):
        if coord not in stack.coords:
            raise SceneError(f"to_reflectance needs a '{coord}' coordinate on (time, band)")
    refl = stack.where(stack != 0).astype(np.float32) * stack.scale.astype(np.float32) + \
        stack.offset.astype(np.float32)
    is_scl = stack.band == CLASS_BAND
    return xr.where(is_scl, stack.astype(np.float32), refl).transpose(*stack.dims).astype(
        np.float32).assign_attrs(units="surface reflectance; scl: SCL class")
