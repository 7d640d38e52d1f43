"""The embedded world served like Earth Search: its COGs over HTTP, on a link with latency.

Earth Search's items carry ``https://…`` hrefs to COGs that GDAL reads with HTTP range
requests. :class:`CogServer` serves a directory (the world's root) the same way on
127.0.0.1, in a child process (:mod:`s2xr.demo.cog_http`: ``Range``, ``HEAD``, keep-alive, a
thread per connection), with a per-request latency, a bandwidth cap and a fault rate (503 /
connection reset / stall) set at start or changed with :meth:`CogServer.configure`, and
counts requests, bytes and requests in flight at the server::

    with CogServer(world.root, latency_s=0.02) as srv:
        items = http_items(world.items(), world.root, srv.url)
        stack = stack_scenes(items, bands)          # GDAL reads http://127.0.0.1:…/…tif
        srv.counts().requests

:func:`http_items` rewrites ``file://`` asset hrefs to the server's URLs (``tag`` adds an
``/@tag`` first segment the server ignores: a URL no client has cached yet);
:func:`write_http_items` writes them as an ItemCollection for
:class:`~s2xr.demo.stac_server.StacApiServer`, so a STAC search returns http hrefs.

The server is a child process, not a thread, because rasterio holds the GIL while GDAL opens
a dataset: a server thread in the reading process would never answer that open.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import unquote, urlsplit

import requests

from s2xr.demo import cog_http
from s2xr.demo.cog_http import Counts, Link
from s2xr.demo.stac_server import free_port
from s2xr.errors import ServerError
from s2xr.procs import spawn_child, stop_child

__all__ = ["CogServer", "Counts", "Link", "http_items", "write_http_items"]


class CogServer:
    """``with CogServer(root, latency_s=0.02, bandwidth=None, fault_rate=0.0,
    fault_kinds=("503", "reset", "stall"), stall_s=60.0, seed=0) as srv: srv.url``.

    Keywords other than ``host``/``port``/``seed``/``record`` are :class:`Link` fields.
    ``record=True`` makes :meth:`counts` list every served byte range (path, first, last).
    """

    def __init__(self, root: str | Path, *, host: str = "127.0.0.1", port: int | None = None,
                 seed: int = 0, record: bool = False, startup_timeout_s: float = 30.0,
                 **link: Any) -> None:
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise ServerError(f"COG server root {self.root} is not a directory")
        self.host = host
        self.port = port or free_port(host)
        self.seed = seed
        self.record = record
        self.link = Link(**link)  # validated here, in this process
        self.startup_timeout_s = startup_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: Any = None
        self._http = requests.Session()
        self.pid_file = Path(tempfile.gettempdir()) / "s2xr-servers" / f"cogserver-{self.port}.pid"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def href(self, path: str | Path, tag: str | None = None) -> str:
        """The URL of ``path``: an existing file under the root, or a path relative to it."""
        p = Path(path)
        rel = (p if p.is_absolute() or p.exists() else self.root / p).resolve().relative_to(
            self.root)
        return f"{self.url}{'/@' + tag if tag else ''}/{rel.as_posix()}"

    # ------------------------------------------------------------------ control
    def _control(self, name: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        if self._proc is None:
            raise ServerError("the COG server is not running")
        r = self._http.post(f"{self.url}{cog_http.CONTROL}{name}", json=body or {}, timeout=30)
        if r.status_code != 200:
            raise ServerError(f"COG server refused {name} {body}: {r.text[:300]}")
        out: dict[str, Any] = r.json()
        return out

    def configure(self, **link: Any) -> Link:
        """Change the link (any :class:`Link` field) for the next requests → the new link."""
        self.link = Link(**{**self.link.__dict__, **link})
        out = self._control("configure", link)["link"]
        return Link(**out)

    def inject(self, kind: str, n: int = 1) -> None:
        """The next ``n`` requests get fault ``kind`` ("503", "reset" or "stall")."""
        self._control("inject", {"kind": kind, "n": n})

    def counts(self) -> Counts:
        """What the server did since it started or was last :meth:`reset`."""
        d = self._control("counts")
        return Counts(**{**d, "by_status": {int(k): v for k, v in d["by_status"].items()},
                         "ranges": tuple((p, int(a), int(b)) for p, a, b in d["ranges"])})

    def reset(self) -> None:
        """Zero the counts."""
        self._control("reset")

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> CogServer:
        if self._proc is not None:
            return self
        config = {"root": str(self.root), "host": self.host, "port": self.port,
                  "seed": self.seed, "record": self.record, **self.link.__dict__}
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        # run by path: the child needs only the standard library, not s2xr's imports
        self._proc = spawn_child([sys.executable, cog_http.__file__, json.dumps(config)],
                                 pid_file=self.pid_file, stdout=subprocess.DEVNULL,
                                 stderr=self._stderr)
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                self._stderr.seek(0)
                err = self._stderr.read().decode(errors="replace")[-2000:]
                self.stop()
                raise ServerError(f"the COG server exited at start: {err}")
            try:
                self._control("ping")
                return self
            except (requests.RequestException, ServerError):
                time.sleep(0.02)
        self.stop()
        raise ServerError(f"the COG server did not answer at {self.url} within "
                          f"{self.startup_timeout_s:.0f} s")

    def stop(self) -> None:
        """Stop the child (stalled requests end with it); safe to call twice."""
        proc, self._proc = self._proc, None
        if proc is not None:
            stop_child(proc, self.pid_file)
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        self._http.close()

    def __enter__(self) -> CogServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def http_items(items: Iterable[dict[str, Any]], root: str | Path, base_url: str,
               tag: str | None = None) -> list[dict[str, Any]]:
    """Copies of ``items`` whose ``file://`` asset hrefs under ``root`` name the same files
    at ``base_url`` (a :class:`CogServer` serving ``root``); other hrefs are kept."""
    root = Path(root).resolve()
    prefix = base_url.rstrip("/") + (f"/@{tag}" if tag else "")
    out = []
    for item in items:
        assets = {}
        for key, asset in item.get("assets", {}).items():
            href = asset.get("href", "")
            if href.startswith("file://"):
                p = Path(unquote(urlsplit(href).path)).resolve()
                if p.is_relative_to(root):
                    asset = {**asset, "href": f"{prefix}/{p.relative_to(root).as_posix()}"}
            assets[key] = asset
        out.append({**item, "assets": assets})
    return out


def write_http_items(items_path: str | Path, out_path: str | Path, root: str | Path,
                     base_url: str) -> Path:
    """The ItemCollection at ``items_path`` with http hrefs (:func:`http_items`), written to
    ``out_path`` — what :class:`~s2xr.demo.stac_server.StacApiServer` serves."""
    src = json.loads(Path(items_path).read_text())
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({**src, "features": http_items(src["features"], root, base_url)}))
    return out
