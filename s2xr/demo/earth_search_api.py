"""A twin of Earth Search v1 on 127.0.0.1: its STAC API and its COG buckets, for tests.

:class:`TwinApi` behind a real HTTP/1.1 server (a thread per connection; run as a process by
:class:`~s2xr.demo.earth_search.EarthSearchTwin`, since rasterio holds the GIL while GDAL
opens a URL, so a server thread in the reading process would never answer) answers the
way Earth Search's stac-server does: the landing page, ``/conformance``, ``/collections``,
``/collections/{id}``, ``/collections/{id}/items[/{item}]`` and ``GET``/``POST /search`` with
``collections``, ``ids``, ``bbox`` or ``intersects`` (antimeridian-crossing geometries too)
and ``datetime``; results sorted by ``properties.datetime``, ``id``, ``collection``
(descending), ``limit`` 10 by default (at most 10,000), ``numberMatched`` /
``numberReturned`` / ``context``, and paging by a ``next`` token in a ``rel=next`` link
(``POST`` with ``body`` and ``merge: false``, or a ``GET`` URL) on every page that returned
items. Parameters it does not implement (``query``, ``filter``, ``sortby``, ``fields``) are
refused with 400, never silently ignored. The items are :mod:`s2xr.demo.earth_search`'s
(real items, synthetic rasters); the same server serves the rasters with ``Range`` requests
at the items' hrefs (``/{bucket host}/{path}``), as GDAL reads COGs from S3 over HTTPS.
The collection documents are minimal stand-ins (id, title, extent), not Earth Search's.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pandas as pd
import shapely.geometry
from shapely.geometry.base import BaseGeometry

from s2xr.demo.earth_search import twin_item

CONFORMANCE = [
    "https://api.stacspec.org/v1.0.0/core",
    "https://api.stacspec.org/v1.0.0/collections",
    "https://api.stacspec.org/v1.0.0/ogcapi-features",
    "https://api.stacspec.org/v1.0.0/item-search",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
]
TITLES = {"sentinel-2-l2a": "Sentinel-2 Level-2A",
          "sentinel-2-c1-l2a": "Sentinel-2 Collection 1 Level-2A"}
UNSUPPORTED = ("query", "filter", "filter-lang", "sortby", "fields")
MAX_LIMIT = 10_000
GEOJSON = "application/geo+json"


class BadRequestError(ValueError):
    """A search the twin answers with 400 (the message is the answer's ``description``)."""


def _bbox_geometry(bbox: list[float]) -> BaseGeometry:
    if len(bbox) == 6:
        bbox = [bbox[0], bbox[1], bbox[3], bbox[4]]
    if len(bbox) != 4:
        raise BadRequestError("Invalid bbox, must have 4 or 6 points")
    w, s, e, n = (float(v) for v in bbox)
    if s > n:
        raise BadRequestError("Invalid bbox, SW latitude must be less than NE latitude")
    if w > e:  # across the antimeridian
        return shapely.geometry.box(w, s, 180, n).union(shapely.geometry.box(-180, s, e, n))
    return shapely.geometry.box(w, s, e, n)


def _time(value: str) -> pd.Timestamp:
    t = pd.Timestamp(value)
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


def _interval(datetime: str | None) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
    if not datetime:
        return None, None
    parts = datetime.split("/")
    if len(parts) > 2:
        raise BadRequestError("datetime value is invalid, too many forward slashes for an interval")
    if len(parts) == 1:
        t = _time(parts[0])
        return t, t
    a, b = (None if p in ("", "..") else _time(p) for p in parts)
    if a is None and b is None:
        raise BadRequestError("datetime value is invalid, at least one end of the interval must "
                         "be closed")
    return a, b


def _sort_key(item: dict[str, Any]) -> tuple[int, str, str]:
    ms = int(_time(item["properties"]["datetime"]).value // 1_000_000)
    return ms, item["id"], str(item.get("collection"))


def _listed(value: Any) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value.split(",")
        value = parsed if isinstance(parsed, list) else [parsed]
    return [str(v) for v in value]


class TwinApi:
    """The twin's answers for ``items`` (already :func:`~s2xr.demo.earth_search.twin_item`'d),
    served at ``http://host:port/v1``; rasters under ``root``."""

    def __init__(self, items: Iterable[dict[str, Any]], root: Path, *,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.root = Path(root)
        self.items = list(items)
        self.searches: list[dict[str, Any]] = []  # every search's parameters, in order
        self.data_requests = 0
        self._lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.base_url}/v1"

    # ------------------------------------------------------------------ documents
    def landing(self) -> dict[str, Any]:
        links = [{"rel": "self", "type": "application/json", "href": self.url},
                 {"rel": "root", "type": "application/json", "href": self.url},
                 {"rel": "conformance", "type": "application/json",
                  "href": f"{self.url}/conformance"},
                 {"rel": "data", "type": "application/json", "href": f"{self.url}/collections"},
                 {"rel": "search", "type": GEOJSON, "href": f"{self.url}/search",
                  "method": "GET"},
                 {"rel": "search", "type": GEOJSON, "href": f"{self.url}/search",
                  "method": "POST"}]
        links += [{"rel": "child", "type": "application/json",
                   "href": f"{self.url}/collections/{c}"} for c in self.collection_ids()]
        return {"stac_version": "1.0.0", "type": "Catalog", "id": "earth-search-aws",
                "title": "Earth Search by Element 84 (s2xr twin on 127.0.0.1)",
                "description": "Real Earth Search v1 items over synthetic rasters",
                "stac_extensions": [], "conformsTo": CONFORMANCE, "links": links}

    def collection_ids(self) -> list[str]:
        return sorted({str(it.get("collection")) for it in self.items})

    def collection(self, cid: str) -> dict[str, Any] | None:
        mine = [it for it in self.items if it.get("collection") == cid]
        if not mine:
            return None
        bounds = [shapely.geometry.shape(it["geometry"]).bounds for it in mine]
        times = sorted(it["properties"]["datetime"] for it in mine)
        return {"type": "Collection", "stac_version": "1.0.0", "id": cid,
                "title": TITLES.get(cid, cid), "description": f"{TITLES.get(cid, cid)} "
                "(stand-in collection document of the s2xr Earth Search twin)",
                "license": "proprietary", "stac_extensions": [],
                "extent": {"spatial": {"bbox": [[min(b[0] for b in bounds),
                                                  min(b[1] for b in bounds),
                                                  max(b[2] for b in bounds),
                                                  max(b[3] for b in bounds)]]},
                           "temporal": {"interval": [[times[0], times[-1]]]}},
                "links": [{"rel": "self", "type": "application/json",
                           "href": f"{self.url}/collections/{cid}"},
                          {"rel": "parent", "type": "application/json", "href": self.url},
                          {"rel": "root", "type": "application/json", "href": self.url},
                          {"rel": "items", "type": GEOJSON,
                           "href": f"{self.url}/collections/{cid}/items"}]}

    def search(self, params: dict[str, Any], method: str, collection: str | None = None
               ) -> dict[str, Any]:
        """One page of a search (stac-server's answer shape)."""
        bad = [k for k in UNSUPPORTED if params.get(k) not in (None, "", [], {})]
        if bad:
            raise BadRequestError(f"the Earth Search twin does not implement {bad}")
        if params.get("bbox") is not None and params.get("intersects") is not None:
            raise BadRequestError("Expected bbox OR intersects, not both")
        geom: BaseGeometry | None = None
        if params.get("bbox") is not None:
            bbox = params["bbox"]
            geom = _bbox_geometry([float(v) for v in (bbox.split(",") if isinstance(
                bbox, str) else bbox)])
        elif params.get("intersects") is not None:
            inter = params["intersects"]
            geom = shapely.geometry.shape(json.loads(inter) if isinstance(inter, str)
                                          else inter)
        try:
            limit = int(params.get("limit") or 10)
        except ValueError:
            raise BadRequestError("Invalid limit value") from None
        if limit <= 0:
            raise BadRequestError("Invalid limit value, must be a number between 1 and 10000 "
                             "inclusive")
        limit = min(limit, MAX_LIMIT)
        t0, t1 = _interval(params.get("datetime"))
        collections = [collection] if collection else _listed(params.get("collections"))
        ids = _listed(params.get("ids"))
        hits = []
        for it in self.items:
            if collections and it.get("collection") not in collections:
                continue
            if ids and it["id"] not in ids:
                continue
            t = _time(it["properties"]["datetime"])
            if (t0 is not None and t < t0) or (t1 is not None and t > t1):
                continue
            if geom is not None and not shapely.geometry.shape(it["geometry"]).intersects(geom):
                continue
            hits.append(it)
        hits.sort(key=_sort_key, reverse=True)
        matched = len(hits)
        if params.get("next"):
            ms, iid, coll = str(params["next"]).split(",", 2)
            after = (int(ms), iid, coll)
            hits = [it for it in hits if _sort_key(it) < after]
        page = hits[:limit]
        endpoint = f"{self.url}/collections/{collection}/items" if collection \
            else f"{self.url}/search"
        links: list[dict[str, Any]] = []
        if page:
            nxt = {k: v for k, v in params.items() if v not in (None, "", [])}
            nxt.update(limit=limit, next=",".join(map(str, _sort_key(page[-1]))))
            link: dict[str, Any] = {"rel": "next", "title": "Next page of Items",
                                    "method": method, "type": GEOJSON}
            if method == "POST":
                link.update(href=endpoint, merge=False, body=nxt)
            else:
                link["href"] = endpoint + "?" + urlencode(
                    {k: ",".join(map(str, v)) if isinstance(v, list) else
                     json.dumps(v) if isinstance(v, dict) else v for k, v in nxt.items()})
            links.append(link)
        if collection:
            links += [{"rel": "self", "type": "application/json", "href": endpoint},
                      {"rel": "root", "type": "application/geo+json", "href": self.url}]
        return {"type": "FeatureCollection", "stac_version": "1.0.0", "stac_extensions": [],
                "context": {"limit": limit, "matched": matched, "returned": len(page)},
                "numberMatched": matched, "numberReturned": len(page),
                "features": page, "links": links}

def _handler(twin: TwinApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return

        def _send(self, status: int, body: bytes, ctype: str,
                  headers: dict[str, str] | None = None, head: bool = False) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            if not head:
                self.wfile.write(body)

        def _json(self, status: int, doc: Any) -> None:
            ctype = GEOJSON if isinstance(doc, dict) and doc.get("type") in (
                "FeatureCollection", "Feature") else "application/json"
            self._send(status, json.dumps(doc).encode(), ctype)

        def _api(self, method: str, body: dict[str, Any] | None) -> None:
            parts = urlsplit(self.path)
            path = parts.path.rstrip("/")
            seg = path.split("/")[2:] if path.startswith("/v1") else path.split("/")[1:]
            query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            try:
                if not seg:
                    return self._json(200, twin.landing())
                if seg == ["__twin__", "searches"]:  # not Earth Search's: for tests
                    with twin._lock:
                        return self._json(200, {"searches": twin.searches,
                                                "data_requests": twin.data_requests})
                if seg == ["conformance"]:
                    return self._json(200, {"conformsTo": CONFORMANCE})
                if seg == ["search"]:
                    params = body if method == "POST" else query
                    with twin._lock:
                        twin.searches.append(dict(params or {}))
                    return self._json(200, twin.search(params or {}, method))
                if seg[0] == "collections":
                    if len(seg) == 1:
                        return self._json(200, {"collections": [twin.collection(c) for c in
                                                                twin.collection_ids()],
                                                "links": []})
                    if twin.collection(seg[1]) is None:
                        return self._json(404, {"code": "NotFound",
                                                "description": "Collection not found"})
                    if len(seg) == 2:
                        return self._json(200, twin.collection(seg[1]))
                    if seg[2] == "items" and len(seg) == 3:
                        return self._json(200, twin.search(query, "GET", seg[1]))
                    if seg[2] == "items" and len(seg) == 4:
                        found = [it for it in twin.items
                                 if it["id"] == seg[3] and it.get("collection") == seg[1]]
                        if found:
                            return self._json(200, found[0])
            except (BadRequestError, ValueError) as exc:
                return self._json(400, {"code": "BadRequestError", "description": str(exc)})
            return self._json(404, {"code": "NotFound", "description": "Not Found"})

        def _file(self, head: bool) -> None:
            rel = urlsplit(self.path).path.lstrip("/")
            path = (twin.root / rel).resolve()
            if twin.root.resolve() not in path.parents or not path.is_file():
                return self._send(404, b"Not Found", "text/plain", head=head)
            with twin._lock:
                twin.data_requests += 1
            data = path.read_bytes()
            rng = self.headers.get("Range")
            if rng and rng.startswith("bytes=") and "," not in rng:
                a, _, b = rng[6:].partition("-")
                start = int(a) if a else max(0, len(data) - int(b))
                end = min(int(b), len(data) - 1) if a and b else len(data) - 1
                if start >= len(data):
                    return self._send(416, b"", "text/plain",
                                      {"Content-Range": f"bytes */{len(data)}"}, head)
                return self._send(206, data[start:end + 1], "image/tiff",
                                  {"Content-Range": f"bytes {start}-{end}/{len(data)}",
                                   "Accept-Ranges": "bytes"}, head)
            return self._send(200, data, "image/tiff", {"Accept-Ranges": "bytes"}, head)

        def do_GET(self) -> None:
            if self.path.split("?")[0].rstrip("/") == "/v1" or self.path.startswith("/v1/") \
                    or self.path.startswith("/__twin__/"):
                return self._api("GET", None)
            return self._file(head=False)

        def do_HEAD(self) -> None:
            return self._file(head=True)

        def do_POST(self) -> None:
            n = int(self.headers.get("Content-Length") or 0)
            try:
                body = json.loads(self.rfile.read(n) or b"{}")
            except json.JSONDecodeError:
                return self._json(400, {"code": "BadRequestError", "description": "bad JSON"})
            return self._api("POST", body if isinstance(body, dict) else {})

    return Handler


def main(argv: list[str] | None = None) -> None:
    """``python -m s2xr.demo.earth_search_api --root DIR --port N ITEMS.json``: write the
    rasters, serve until SIGTERM; prints ``ready URL`` once it answers."""
    import argparse
    import signal
    import sys

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("items", type=Path, help="a JSON list of real Earth Search item dicts")
    ap.add_argument("--root", type=Path, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args(argv)
    base = f"http://{args.host}:{args.port}"
    items = [twin_item(it, args.root, api_url=f"{base}/v1", base_url=base)
             for it in json.loads(args.items.read_text())]
    server = ThreadingHTTPServer((args.host, args.port),
                                 _handler(TwinApi(items, args.root, host=args.host,
                                                  port=args.port)))
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(f"ready {base}/v1", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    sys.exit(0)


if __name__ == "__main__":
    main()
