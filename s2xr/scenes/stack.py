"""Lazy stacks of Sentinel-2 items: ``xr.DataArray(time, band, y, x)`` per UTM CRS.

Built with stackstac (odc-stac as an alternative engine) on the items' native 10 m grid. DN
are kept as uint16 (0 = nodata); per-(time, band) coords ``href``, ``scale`` and ``offset``
say where each slice comes from and how to turn it into reflectance
(:func:`to_reflectance`). Reflectance bands are resampled with ``resampling``; SCL always with
nearest.
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
from s2xr.scenes.items import normalize_item, reflectance_params

log = logging.getLogger(__name__)

_RS = {"bilinear": Resampling.bilinear, "cubic": Resampling.cubic,
       "nearest": Resampling.nearest}


def _epsg(item: dict[str, Any]) -> int:
    return int(item["properties"]["proj:epsg"])


def _add_asset_coords(arr: xr.DataArray, items: Sequence[dict[str, Any]]) -> xr.DataArray:
    by_id = {it["id"]: it for it in items}
    ids = [str(i) for i in arr.coords["id"].values]
    bands = [str(b) for b in arr.band.values]
    href = np.empty((len(ids), len(bands)), dtype=object)
    scale = np.ones((len(ids), len(bands)))
    offset = np.zeros((len(ids), len(bands)))
    for t, iid in enumerate(ids):
        it = by_id[iid]
        for b, band in enumerate(bands):
            href[t, b] = it["assets"][band]["href"]
            if band != "scl":
                scale[t, b], offset[t, b] = reflectance_params(it, band)
    return arr.assign_coords(href=(("time", "band"), href), scale=(("time", "band"), scale),
                             offset=(("time", "band"), offset))


def _stackstac(items: list[dict[str, Any]], bands: Sequence[str], epsg: int, resolution: float,
               resampling: Resampling, chunksize: int) -> xr.DataArray:
    import stackstac

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Use `@` matmul", category=Warning)
        return stackstac.stack(items, assets=list(bands), epsg=epsg, resolution=resolution,
                               resampling=resampling, dtype=np.dtype("uint16"),
                               fill_value=np.uint16(0), rescale=False, chunksize=chunksize,
                               xy_coords="topleft", properties=False, band_coords=False)


def _odc(items: list[dict[str, Any]], bands: Sequence[str], epsg: int, resolution: float,
         resampling: str, chunksize: int) -> xr.DataArray:
    import odc.stac
    import pystac

    pitems = [pystac.Item.from_dict(it) for it in items]
    ds = odc.stac.load(pitems, bands=list(bands), crs=f"EPSG:{epsg}", resolution=resolution,
                       resampling={b: ("nearest" if b == "scl" else resampling) for b in bands},
                       dtype="uint16", nodata=0, chunks={"x": chunksize, "y": chunksize},
                       groupby="id")
    arr = ds[list(bands)].to_array("band").transpose("time", "band", "y", "x")
    # odc uses pixel-centre coords; report top-left like the stackstac engine
    arr = arr.assign_coords(x=arr.x - resolution / 2, y=arr.y + resolution / 2)
    return arr.assign_coords(id=("time", [it.id for it in pitems]))


def stack_by_epsg(items: Sequence[dict[str, Any]], bands: Sequence[str], *,
                  resolution: float = 10, resampling: str = "bilinear",
                  engine: str = "stackstac", chunksize: int = 2048) -> dict[int, xr.DataArray]:
    """``{epsg: DataArray(time, band, y, x)}``, lazy (no pixel is read). ``bands`` are
    reflectance asset keys; ``scl`` is appended when not listed."""
    norm = [normalize_item(it) for it in items]
    refl = [b for b in bands if b != "scl"]
    for it in norm:
        missing = [b for b in (*refl, "scl") if b not in it.get("assets", {})]
        if missing:
            raise SceneError(f"item {it['id']}: missing band asset(s) {missing}")
    out: dict[int, xr.DataArray] = {}
    for epsg in sorted({_epsg(it) for it in norm}):
        group = [it for it in norm if _epsg(it) == epsg]
        if engine == "stackstac":
            r = _stackstac(group, refl, epsg, resolution, _RS[resampling], chunksize)
            s = _stackstac(group, ["scl"], epsg, resolution, Resampling.nearest, chunksize)
            arr = xr.concat([r, s], dim="band", coords="minimal", compat="override",
                            join="override")
        elif engine == "odc-stac":
            arr = _odc(group, [*refl, "scl"], epsg, resolution, resampling, chunksize)
        else:
            raise SceneError(f"stac.engine {engine!r}: use 'stackstac' or 'odc-stac'")
        arr = _add_asset_coords(arr, group)
        arr.attrs.update({"epsg": epsg, "resolution": resolution, "engine": engine,
                          "resampling": resampling, "units": "DN (see scale/offset coords)"})
        out[epsg] = arr.rename(f"s2_l2a_{epsg}")
        log.info("stack EPSG:%d: %d item(s) × %d band(s), %d×%d px (lazy)", epsg,
                 arr.sizes["time"], arr.sizes["band"], arr.sizes["y"], arr.sizes["x"])
    return out


def stack_scenes(items: Sequence[dict[str, Any]], bands: Sequence[str], resolution: float = 10,
                 *, resampling: str = "bilinear", engine: str = "stackstac",
                 epsg: int | None = None, chunksize: int = 2048) -> xr.DataArray:
    """One lazy ``DataArray(time, band, y, x)`` of uint16 DN for items in one UTM CRS.

    With items in several CRSs pass ``epsg=`` to choose one (or use :func:`stack_by_epsg`).
    The grid is the items' native grid (x/y are pixel top-left coordinates); coords ``href``,
    ``scale``, ``offset`` (time, band). Does not compute.
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
    """Lazy float32 reflectance from a DN stack (DN × scale + offset; 0 → NaN; SCL kept)."""
    refl = stack.where(stack != 0).astype(np.float32) * stack.scale.astype(np.float32) + \
        stack.offset.astype(np.float32)
    is_scl = stack.band == "scl"
    return xr.where(is_scl, stack.astype(np.float32), refl).assign_attrs(
        units="surface reflectance (SCL as class values)")
