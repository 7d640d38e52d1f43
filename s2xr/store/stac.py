"""Publish the chips as a STAC catalog and as stac-geoparquet; validate it offline.

``publish_stac(root)`` → ``{root}/stac/catalog.json``: one Collection per tile, one Item
per passed chip with ``data`` (COG), ``thumbnail`` (JPG) and ``metadata`` (JSON) assets.
``write_stac_geoparquet(root)`` → ``{root}/indexes/chips.stac.parquet``: the same items, each
with its ``collection`` and ``collection`` / ``root`` links to the JSON catalog.

Hrefs (links and assets, in both): relative by default, so the dataset can be moved or
copied as a whole — in the JSON, relative to the document (as STAC says); in the
stac-geoparquet file, relative to the parquet file (``Path(parquet).parent / href``).
``absolute=True`` writes absolute local paths; ``absolute=True, base_url=URL`` writes URLs
for a dataset root served at ``URL`` (``URL/stac/catalog.json``, ``URL/chips/…/x.tif``).
``validate_stac`` checks every file against the core STAC 1.1 JSON schemas shipped inside
pystac (no network); extension schemas are not available offline and are not checked.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pystac
import pystac.stac_io

from s2xr.config import is_url
from s2xr.errors import InputError
from s2xr.store.index import read_index
from s2xr.store.layout import DatasetLayout, atomic_write
from s2xr.store.objects import filesystem

log = logging.getLogger(__name__)

PROJ_EXT = "https://stac-extensions.github.io/projection/v2.0.0/schema.json"


class FsspecStacIO(pystac.stac_io.DefaultStacIO):
    """pystac I/O that also reads and writes object store URLs (``s3://``, ``gs://``, …)
    through fsspec, e.g. an object store dataset's catalog:
    ``pystac.Catalog.from_file("s3://bucket/prefix/stac/catalog.json",
    stac_io=FsspecStacIO())``. Local paths and http(s) go to pystac's default I/O."""

    def read_text_from_href(self, href: str) -> str:
        if is_url(href) and not href.startswith(("http://", "https://")):
            fs, path = filesystem(href)
            return str(fs.cat_file(path).decode("utf-8"))
        return str(super().read_text_from_href(href))

    def write_text_to_href(self, href: str, txt: str) -> None:
        if is_url(href) and not href.startswith(("http://", "https://")):
            fs, path = filesystem(href)
            fs.pipe_file(path, txt.encode("utf-8"))  # one PUT: the object appears whole
            return
        super().write_text_to_href(href, txt)


def _collection_id(tile: str) -> str:
    return f"s2xr-chips-{tile}"


def chip_item(row: Any, root: Path) -> pystac.Item:
    """A STAC Item for one index row (a passed chip); asset hrefs absolute local paths."""
    geom = row.geometry
    when = pd.Timestamp(row.scene_datetime).to_pydatetime()
    tif = root / row.path
    props = {
        "s2xr:mmsi": int(row.mmsi), "s2xr:scene_id": row.scene_id,
        "s2xr:split": row.split, "s2xr:ais_time": None if pd.isna(row.ais_time) else
        pd.Timestamp(row.ais_time).isoformat(),
        "s2xr:dt_seconds": None if pd.isna(row.dt_seconds) else float(row.dt_seconds),
        "s2xr:qa_cloud_frac": float(row.qa_cloud_frac),
        "s2xr:qa_water_frac": float(row.qa_water_frac),
        "s2xr:qa_land_frac": float(row.qa_land_frac),
        "s2xr:ship_type": None if pd.isna(row.ship_type) else int(row.ship_type),
        "s2xr:length": None if pd.isna(row.length) else float(row.length),
        "s2xr:beam": None if pd.isna(row.beam) else float(row.beam),
        "proj:code": f"EPSG:{int(row.epsg)}", "gsd": 10,
        "s2xr:bands": str(row.bands).split(","),
    }
    item = pystac.Item(id=row.chip_id, geometry=geom.__geo_interface__,
                       bbox=list(geom.bounds), datetime=when, properties=props,
                       stac_extensions=[PROJ_EXT], collection=_collection_id(row.tile_id))
    if str(row.path).endswith(".tif"):  # no GeoTIFF with storage.write_geotiff off
        item.add_asset("data", pystac.Asset(str(tif), media_type=pystac.MediaType.COG,
                                            roles=["data"], title="reflectance (float32)"))
    item.add_asset("thumbnail", pystac.Asset(str(tif.with_suffix(".jpg")),
                                             media_type=pystac.MediaType.JPEG,
                                             roles=["thumbnail"], title="quicklook"))
    item.add_asset("metadata", pystac.Asset(str(tif.with_suffix(".json")),
                                            media_type=pystac.MediaType.JSON,
                                            roles=["metadata"], title="provenance"))
    return item


def _url(base_url: str, root: Path, path: Path) -> str:
    """The URL of a file under the dataset root served at ``base_url``."""
    return f"{base_url.rstrip('/')}/{path.relative_to(root).as_posix()}"


def _passed(root: Path) -> Any:
    index = read_index(root)
    return index.loc[index["qa_pass"].astype(bool)]


def publish_stac(root: str | Path, *, out: str | Path | None = None,
                 absolute: bool = False, base_url: str | None = None) -> Path:
    """Write the chip catalog; returns the catalog.json path. Relative hrefs by default;
    ``absolute``: absolute local paths, or URLs under ``base_url`` (the dataset root's URL;
    the catalog must then lie under the root)."""
    root = Path(root).resolve()
    out = Path(out).resolve() if out else DatasetLayout(root).stac
    if base_url and not absolute:
        raise InputError("publish-stac: --base-url needs --absolute (relative hrefs need no "
                         "base URL)")
    if base_url and not out.is_relative_to(root):
        raise InputError(f"publish-stac: with a base URL the catalog must lie under the "
                         f"dataset root {root} (it is served from there), not {out}")
    passed = _passed(root)
    cat = pystac.Catalog(id="s2xr-chips", description="Sentinel-2 L2A ship chips (s2xr)",
                         title="s2xr chips")
    for tile, rows in passed.groupby("tile_id"):
        items = [chip_item(r, root) for r in rows.itertuples()]
        col = pystac.Collection(
            id=_collection_id(str(tile)), description=f"s2xr ship chips of tile {tile}",
            extent=pystac.Extent(
                pystac.SpatialExtent([list(rows.total_bounds)]),
                pystac.TemporalExtent([[pd.Timestamp(rows.scene_datetime.min()).to_pydatetime(),
                                        pd.Timestamp(rows.scene_datetime.max()).to_pydatetime()
                                        ]])),
            license="other", title=f"tile {tile}")
        col.add_items(items)
        cat.add_child(col)
    tmp = out.with_name(out.name + "_tmp")  # no dot: pystac would take it for a file
    shutil.rmtree(tmp, ignore_errors=True)
    if base_url:
        cat.normalize_hrefs(_url(base_url, root, out))
        for item in cat.get_items(recursive=True):
            for asset in item.assets.values():
                asset.href = _url(base_url, root, Path(asset.href))
    else:
        cat.normalize_hrefs(str(tmp))
        if not absolute:
            cat.make_all_asset_hrefs_relative()
    cat.save(catalog_type=pystac.CatalogType.ABSOLUTE_PUBLISHED if absolute else
             pystac.CatalogType.SELF_CONTAINED, dest_href=str(tmp))
    if absolute and base_url is None:  # hrefs were made under tmp: rewrite to the final dir
        for f in tmp.rglob("*.json"):
            f.write_text(f.read_text().replace(str(tmp), str(out)))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    log.info("STAC catalog: %d collection(s), %d item(s) → %s", passed["tile_id"].nunique(),
             len(passed), out / DatasetLayout.STAC_CATALOG)
    return out / DatasetLayout.STAC_CATALOG


def write_stac_geoparquet(root: str | Path, path: str | Path | None = None, *,
                          absolute: bool = False, base_url: str | None = None,
                          catalog: str | Path | None = None) -> Path:
    """The chip items as stac-geoparquet (via rustac), for DuckDB/GeoPandas users: each
    item with its ``collection`` and links to its collection and the root of the JSON
    catalog (``catalog``, default ``{root}/stac/catalog.json``). Hrefs as for
    :func:`publish_stac`; relative ones are relative to the parquet file."""
    import rustac

    root = Path(root).resolve()
    layout = DatasetLayout(root)
    path = Path(path).resolve() if path else layout.stac_geoparquet
    cat = Path(catalog).resolve() if catalog else layout.stac_catalog

    def href(p: Path) -> str:
        if base_url:
            return _url(base_url, root, p)
        return str(p) if absolute else os.path.relpath(p, path.parent).replace(os.sep, "/")

    items = []
    for r in _passed(root).itertuples():
        item = chip_item(r, root)
        for asset in item.assets.values():
            asset.href = href(Path(asset.href))
        d = item.to_dict(include_self_link=False, transform_hrefs=False)
        col = cat.parent / _collection_id(r.tile_id) / "collection.json"
        d["links"] = [{"rel": "collection", "href": href(col), "type": "application/json"},
                      {"rel": "root", "href": href(cat), "type": "application/json"}]
        items.append(d)
    import asyncio

    async def _write(dest: str) -> None:  # rustac's writer is a coroutine
        await rustac.write(dest, items)

    def write(tmp: Path) -> None:
        asyncio.run(_write(str(tmp.with_suffix(".parquet"))))
        tmp.with_suffix(".parquet").replace(tmp)

    atomic_write(path, write)
    return path


def validate_stac(catalog: str | Path) -> int:
    """Validate every catalog/collection/item JSON under the catalog's folder against the
    core STAC schemas bundled with pystac (offline). Returns how many files were checked;
    raises ``jsonschema.ValidationError`` on the first invalid one."""
    from jsonschema import Draft7Validator
    from pystac.validation.local_validator import get_local_schema_cache
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT7

    cache = get_local_schema_cache()
    registry = Registry().with_resources(
        (uri, Resource.from_contents(schema, default_specification=DRAFT7))
        for uri, schema in cache.items())
    which = {"Feature": "item", "Catalog": "catalog", "Collection": "collection"}
    n = 0
    for f in sorted(Path(catalog).parent.rglob("*.json")):
        doc = json.loads(f.read_text())
        kind = which.get(doc.get("type"))
        if kind is None:
            continue
        uri = (f"https://schemas.stacspec.org/v{pystac.get_stac_version()}/{kind}-spec/"
               f"json-schema/{kind}.json")
        Draft7Validator(cache[uri], registry=registry).validate(doc)
        n += 1
    return n
