"""Search Sentinel-2 L2A items for AIS points: batched per tile and time window.

Never one query per point: points are grouped by (tile, UTC day) and each group costs one
search (plus its pages). Sources sit behind the small :class:`ItemSource` protocol:

* :class:`StacApiSource` — any STAC API through pystac-client; urllib3 retries with
  exponential back-off on 429/5xx honouring ``Retry-After``;
* :class:`StaticItemSource` — a static catalog.json or an ItemCollection / FeatureCollection
  file, filtered locally;
* :class:`MemoryItemSource` — a list of item dicts (tests, notebooks).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import pandas as pd
import shapely.geometry

from s2xr.config import StacConfig
from s2xr.errors import StacError, StacUnavailableError
from s2xr.grid import tiles_at_many
from s2xr.scenes.items import dedupe_items, normalize_item

log = logging.getLogger(__name__)

Bbox = tuple[float, float, float, float]
CHIP_MARGIN_DEG = 0.03  # > half a 256 px chip at 10 m (1.28 km) at any latitude we chip


class ItemSource(Protocol):
    """Anything that can answer a bbox + time-range search with raw item dicts."""

    def search(self, *, bbox: Bbox, start: pd.Timestamp, end: pd.Timestamp,
               collection: str) -> list[dict[str, Any]]: ...


def _iso(t: pd.Timestamp) -> str:
    return t.tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%SZ")


class _NotAStacPageError(ValueError):
    """A 200 answer whose JSON is not a STAC page (no object, or features not a list)."""


def _body_error(exc: BaseException) -> bool:
    """Whether a failed read is a bad or cut-off response body worth asking again for (the
    status-code retries already happened in urllib3 and are not repeated here)."""
    import requests

    if isinstance(exc, json.JSONDecodeError | UnicodeDecodeError | _NotAStacPageError):
        return True
    cause = exc.__cause__ or exc.__context__
    return isinstance(cause, requests.exceptions.ChunkedEncodingError
                      | requests.exceptions.ContentDecodingError)


def _make_io(cfg: StacConfig) -> Any:
    """A pystac-client ``StacApiIO`` that holds ``cfg.timeout_s`` on every request, retries
    429/5xx and connection errors in urllib3 (honouring ``Retry-After``) and also retries,
    request by request, answers whose body is cut off, is not JSON or is not a STAC page —
    so one bad reply costs one more request, not the whole search."""
    import random
    import time

    from pystac_client.stac_api_io import StacApiIO
    from urllib3 import Retry

    class RetryingStacApiIO(StacApiIO):
        def read_json(self, source: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
            for attempt in range(cfg.max_retries + 1):
                try:
                    doc = json.loads(self.read_text(source, *args, **kwargs))
                    if not isinstance(doc, dict) or not isinstance(
                            doc.get("features", []), list):
                        raise _NotAStacPageError(f"answer is not a STAC object or page "
                                            f"({type(doc).__name__})")
                    return doc
                except Exception as exc:
                    if not _body_error(exc) or attempt == cfg.max_retries:
                        raise
                    delay = cfg.backoff_s * 2 ** attempt * (0.5 + random.random())
                    log.warning("STAC answer unusable (%s: %s); request %d/%d again in "
                                "%.2f s", type(exc).__name__, str(exc)[:120], attempt + 2,
                                cfg.max_retries + 1, delay)
                    time.sleep(delay)
            raise AssertionError("unreachable")  # pragma: no cover

    retry = Retry(total=cfg.max_retries, backoff_factor=cfg.backoff_s,
                  status_forcelist=(429, 500, 502, 503, 504),
                  allowed_methods=None, respect_retry_after_header=True,
                  raise_on_status=True)
    return RetryingStacApiIO(max_retries=retry, timeout=cfg.timeout_s)


class StacApiSource:
    """A STAC API searched with pystac-client (all HTTP in its ``StacApiIO``).

    Every request is bounded by ``stac.timeout_s`` (connect and each read) and retried up to
    ``stac.max_retries`` times, so one search ends within about
    ``(max_retries + 1) × timeout_s`` plus back-off, whatever the server does."""

    def __init__(self, url: str, cfg: StacConfig | None = None) -> None:
        self.url = url
        self.cfg = cfg or StacConfig()
        self._client: Any = None

    def _open(self) -> Any:
        if self._client is None:
            from pystac_client import Client

            try:
                # Client.open resets the io's timeout to its own argument: pass it here too
                self._client = Client.open(self.url, stac_io=_make_io(self.cfg),
                                           timeout=self.cfg.timeout_s)
            except Exception as exc:  # pystac-client raises several types
                raise StacUnavailableError(f"cannot open STAC API {self.url}: {exc}; check "
                                           "stac.api_url and that the server is up") from exc
        return self._client

    def search(self, *, bbox: Bbox, start: pd.Timestamp, end: pd.Timestamp,
               collection: str) -> list[dict[str, Any]]:
        client = self._open()
        try:
            search = client.search(collections=[collection], bbox=list(bbox),
                                   datetime=f"{_iso(start)}/{_iso(end)}",
                                   limit=self.cfg.page_size)
            return list(search.items_as_dicts())
        except Exception as exc:
            raise StacError(f"STAC search at {self.url} failed ({collection}, bbox {bbox}, "
                            f"{_iso(start)}/{_iso(end)}): {exc}") from exc


def _local_filter(items: Sequence[dict[str, Any]], bbox: Bbox, start: pd.Timestamp,
                  end: pd.Timestamp, collection: str) -> list[dict[str, Any]]:
    box = shapely.geometry.box(*bbox)
    out = []
    for it in items:
        if it.get("collection") not in (None, collection):
            continue
        t = pd.Timestamp(it["properties"]["datetime"])
        t = t.tz_localize("UTC") if t.tzinfo is None else t
        if not (start <= t <= end):
            continue
        geom = it.get("geometry")
        if geom and not shapely.geometry.shape(geom).intersects(box):
            continue
        out.append(it)
    return out


@dataclass
class MemoryItemSource:
    """Item dicts held in memory; counts searches like a server would."""

    items: list[dict[str, Any]]
    n_searches: int = 0

    def search(self, *, bbox: Bbox, start: pd.Timestamp, end: pd.Timestamp,
               collection: str) -> list[dict[str, Any]]:
        self.n_searches += 1
        return _local_filter(self.items, bbox, start, end, collection)


class StaticItemSource(MemoryItemSource):
    """A static STAC catalog (catalog.json / collection.json walked with pystac) or an
    ItemCollection / FeatureCollection JSON file."""

    def __init__(self, path: str | Path) -> None:
        p = Path(path)
        if not p.is_file():
            raise StacError(f"stac.catalog {p} does not exist")
        try:
            doc = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise StacError(f"stac.catalog {p} is not readable JSON: {exc}") from exc
        if doc.get("type") == "FeatureCollection":
            items = doc.get("features", [])
        elif doc.get("type") in ("Catalog", "Collection"):
            import pystac

            cat = pystac.read_file(str(p))
            if not isinstance(cat, pystac.Catalog):  # a Collection is a Catalog too
                raise StacError(f"stac.catalog {p}: not a STAC Catalog or Collection")
            items = [it.to_dict(transform_hrefs=True) for it in cat.get_items(recursive=True)]
        else:
            raise StacError(f"stac.catalog {p}: expected a Catalog, Collection or "
                            "FeatureCollection, got type {doc.get('type')!r}")
        super().__init__(items=items)


def source_from_config(cfg: StacConfig) -> ItemSource:
    """The source named by config: ``stac.catalog`` (static) if set, else ``stac.api_url``."""
    if cfg.catalog is not None:
        return StaticItemSource(cfg.catalog)
    if not cfg.api_url:
        raise StacError("set stac.api_url (a STAC API) or stac.catalog (a static catalog)")
    return StacApiSource(cfg.api_url, cfg)


@dataclass
class SceneSearch:
    """Result of :func:`search_scenes`.

    ``items``: de-duplicated, normalised item dicts passing the cloud filter.
    ``groups``: one row per search made: tile_id, day, n_points, bbox, start, end, rows (the
    point index labels of the group), n_items.
    ``failed``: the groups whose search failed after its retries (``errors="collect"``), with
    an ``error`` column; their points have no items here and should be retried later.
    """

    items: list[dict[str, Any]]
    groups: pd.DataFrame
    dropped: dict[str, int] = field(default_factory=dict)
    failed: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(
        columns=["tile_id", "day", "n_points", "bbox", "start", "end", "rows", "error"]))

    @property
    def failed_rows(self) -> list[Any]:
        """Index labels of the points whose search failed."""
        parts = [np.asarray(rows) for rows in self.failed.get("rows", [])]
        return np.concatenate(parts).tolist() if parts else []


_TILE_BLOCK = 100_000
_DAY_NS = 86_400 * 10**9


def search_groups(points: pd.DataFrame, window_hours: float,
                  start: pd.Timestamp | None = None,
                  end: pd.Timestamp | None = None) -> pd.DataFrame:
    """Group points (columns lon, lat and optionally time) into one search per tile and UTC
    day. Returns tile_id, day, n_points, bbox (tuple), start, end, rows (the group's point
    index labels, an array), sorted by tile_id and day. Pure; no I/O.

    Memory: one int32 tile code and one int64 day per point, and each point's position once
    (the groups' ``rows``); no per-point Python objects (1.46 M points: ~30 MB)."""
    if points.empty:
        return pd.DataFrame(columns=["tile_id", "day", "n_points", "bbox", "start", "end",
                                     "rows"])
    lon = points["lon"].to_numpy(float)
    lat = points["lat"].to_numpy(float)
    # looked up in blocks (the per-point tile lists of 1.46 M points at once cost ~300 MB);
    # each point keeps the code of its first tile, not a string
    names: dict[str, int] = {}
    codes = np.empty(len(lon), dtype=np.int32)
    for i in range(0, len(lon), _TILE_BLOCK):
        found = tiles_at_many(lon[i:i + _TILE_BLOCK], lat[i:i + _TILE_BLOCK])
        codes[i:i + len(found)] = [names.setdefault(t[0] if t else "", len(names))
                                   for t in found]
    tile_names = np.array(list(names), dtype=object)
    has_time = "time" in points and points["time"].notna().any()
    if has_time:
        times = pd.DatetimeIndex(pd.to_datetime(points["time"], utc=True))
        ns = times.asi8  # NaT = int64 min
        valid = ~times.isna()
        day = np.where(valid, ns - ns % _DAY_NS, np.iinfo(np.int64).min)
    elif start is not None and end is not None:
        ns = np.full(len(lon), np.iinfo(np.int64).min, dtype=np.int64)
        valid = np.zeros(len(lon), dtype=bool)
        day = ns
    else:
        raise StacError("points have no time: pass a search period (start and end)")
    labels = points.index.to_numpy()
    win = pd.Timedelta(hours=window_hours)
    keys = pd.DataFrame({"tile": codes, "day": day}, copy=False)
    rows = []
    for (code, d), pos in keys.groupby(["tile", "day"], sort=False).indices.items():
        timed = pos[valid[pos]]
        if len(timed):
            t0 = pd.Timestamp(int(ns[timed].min()), tz="UTC") - win
            t1 = pd.Timestamp(int(ns[timed].max()), tz="UTC") + win
        else:
            t0, t1 = start, end
        if t0 is None or t1 is None or pd.isna(t0):
            continue
        glon, glat = lon[pos], lat[pos]
        bbox = (float(glon.min() - CHIP_MARGIN_DEG), float(glat.min() - CHIP_MARGIN_DEG),
                float(glon.max() + CHIP_MARGIN_DEG), float(glat.max() + CHIP_MARGIN_DEG))
        rows.append({"tile_id": tile_names[code],
                     "day": pd.Timestamp(int(d), tz="UTC") if d != np.iinfo(np.int64).min
                     else pd.NaT,
                     "n_points": len(pos), "bbox": bbox, "start": t0, "end": t1,
                     "rows": labels[pos]})
    if not rows:
        return pd.DataFrame(columns=["tile_id", "day", "n_points", "bbox", "start", "end",
                                     "rows"])
    out = pd.DataFrame(rows)
    return out.sort_values(["tile_id", "day"], kind="stable", na_position="last"
                           ).reset_index(drop=True)


def search_scenes(points: pd.DataFrame, cfg: StacConfig, source: ItemSource | None = None, *,
                  start: pd.Timestamp | None = None,
                  end: pd.Timestamp | None = None,
                  errors: Literal["raise", "collect"] = "raise",
                  progress: Callable[[int, int], None] | None = None) -> SceneSearch:
    """Find L2A items for ``points`` (DataFrame with lon, lat and time or a start/end period).

    One search per (tile, UTC day) group; items normalised (``proj:epsg``), filtered by
    ``cfg.max_cloud`` client-side (servers may lack ``query``), de-duplicated. Performs I/O.
    A group whose search fails after its retries raises ``StacError`` (``errors="raise"``)
    or is listed in ``SceneSearch.failed`` while the other groups' items are kept
    (``errors="collect"``; ``StacError`` only if opening the source itself fails).
    ``progress(done, total)`` is called after each search (``total``: the groups).
    """
    source = source or source_from_config(cfg)
    groups = search_groups(points, cfg.window_hours, start, end)
    found: dict[str, dict[str, Any]] = {}
    counts: list[int] = []
    failed: list[dict[str, Any]] = []
    for g in groups.itertuples():
        try:
            items = source.search(bbox=g.bbox, start=g.start, end=g.end,
                                  collection=cfg.collection)
        except StacError as exc:
            if errors == "raise" or isinstance(exc, StacUnavailableError):
                raise
            log.error("search %s %s failed, its %d point(s) are left for a retry: %s",
                      g.tile_id, "" if pd.isna(g.day) else f"{g.day:%Y-%m-%d}",
                      g.n_points, exc)
            failed.append({**g._asdict(), "error": str(exc)})
            counts.append(0)
            if progress:
                progress(len(counts), len(groups))
            continue
        counts.append(len(items))
        if progress:
            progress(len(counts), len(groups))
        for it in items:
            found.setdefault(it["id"], it)
        log.info("search %s %s: %d point(s) → %d item(s)", g.tile_id,
                 "" if pd.isna(g.day) else f"{g.day:%Y-%m-%d}", g.n_points, len(items))
    groups = groups.assign(n_items=counts) if len(groups) else groups.assign(n_items=[])
    normalised = [normalize_item(it) for it in found.values()]
    cloudy = [it for it in normalised
              if float(it["properties"].get("eo:cloud_cover", 0) or 0) > cfg.max_cloud]
    kept = [it for it in normalised if it not in cloudy]
    unique = dedupe_items(kept)
    dropped = {"cloud_cover": len(cloudy), "duplicate": len(kept) - len(unique)}
    log.info("%d search(es): %d item(s) kept (%s dropped)", len(groups), len(unique),
             ", ".join(f"{v} {k}" for k, v in dropped.items()))
    out = SceneSearch(items=sorted(unique, key=lambda i: (i["properties"]["datetime"], i["id"])),
                      groups=groups, dropped=dropped)
    if failed:
        out.failed = pd.DataFrame(failed).drop(columns=["Index"])
    return out


def bbox_of(points: pd.DataFrame) -> Bbox:
    """The lon/lat bounding box of points (columns lon, lat)."""
    return (float(np.min(points["lon"])), float(np.min(points["lat"])),
            float(np.max(points["lon"])), float(np.max(points["lat"])))
