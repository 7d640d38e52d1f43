"""``doctor``: check that a configured s2xr installation can run.

Each check returns a :class:`Check` (name, ok, detail). Checks never print secrets: the AIS
check says whether a key is set, never what it is. Network checks use the configured
endpoints with a short timeout; nothing is retried.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import platform
import socket
import sqlite3
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from s2xr.config import AisConfig, Config, StacConfig
from s2xr.errors import S2xrError
from s2xr.ops.db import SCHEMA_VERSION
from s2xr.store.layout import DatasetLayout, ensure_writable

log = logging.getLogger(__name__)

#: distributions whose versions the doctor reports (missing core ones fail the check)
CORE_PACKAGES = ("numpy", "pandas", "xarray", "dask", "distributed", "stackstac",
                 "pystac-client", "pystac", "rasterio", "rioxarray", "odc-geo", "geopandas",
                 "pyarrow", "zarr", "websockets", "skyfield", "pydantic", "numba")
OPTIONAL_PACKAGES = ("panel", "holoviews", "xbatcher", "playwright")


@dataclass(frozen=True)
class Check:
    """One doctor check: ``ok`` False makes ``s2xr doctor`` exit non-zero."""

    name: str
    ok: bool
    detail: str


def check_python() -> Check:
    v = platform.python_version()
    ok = tuple(int(p) for p in v.split(".")[:2]) >= (3, 11)
    return Check("python", ok, f"Python {v}" + ("" if ok else " (s2xr needs ≥ 3.11)"))


def check_packages() -> list[Check]:
    """One check per core distribution (installed and its version); optional ones are
    reported but never fail."""
    out = []
    for name in CORE_PACKAGES:
        try:
            out.append(Check(f"package {name}", True, importlib.metadata.version(name)))
        except importlib.metadata.PackageNotFoundError:
            out.append(Check(f"package {name}", False,
                             "not installed: pip install -c constraints.txt -e ."))
    for name in OPTIONAL_PACKAGES:
        try:
            out.append(Check(f"package {name}", True, importlib.metadata.version(name)))
        except importlib.metadata.PackageNotFoundError:
            out.append(Check(f"package {name}", True, "not installed (optional)"))
    return out


def check_gdal() -> Check:
    import rasterio

    drivers = rasterio.drivers.raster_driver_extensions()
    with rasterio.Env() as env:
        names = env.drivers()
    ok = "GTiff" in names and "tif" in drivers
    return Check("gdal", ok, f"GDAL {rasterio.__gdal_version__}, GTiff "
                 + ("available" if ok else "MISSING (reinstall rasterio wheels)"))


def check_storage(root: Path) -> Check:
    try:
        ensure_writable(Path(root))
    except S2xrError as exc:
        return Check("storage", False, str(exc))
    return Check("storage", True, f"{Path(root).resolve()} is writable")


def check_ops_db(path: Path) -> Check:
    if not Path(path).exists():
        return Check("ops db", True, f"{path} not created yet (first run creates it)")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            integrity = conn.execute("PRAGMA quick_check").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return Check("ops db", False, f"{path}: {exc}")
    if integrity != "ok":
        return Check("ops db", False, f"{path}: integrity check says {integrity!r}")
    if version > SCHEMA_VERSION:
        return Check("ops db", False, f"{path}: schema v{version} is newer than this s2xr "
                     f"(v{SCHEMA_VERSION}); upgrade s2xr")
    note = "" if version == SCHEMA_VERSION else f" (migrates v{version}→v{SCHEMA_VERSION} " \
        "on next run)"
    return Check("ops db", True, f"{path}: schema v{version}, integrity ok{note}")


def check_stac(cfg: StacConfig, timeout_s: float = 10.0) -> Check:
    """The STAC API's landing page answers and offers item search and the collection (or the
    static catalog file exists)."""
    if cfg.catalog:
        p = Path(cfg.catalog)
        return Check("stac", p.is_file(), f"static catalog {p}" +
                     ("" if p.is_file() else " does not exist"))
    if cfg.api_url is None:
        return Check("stac", True, "stac.api_url: null, the embedded offline world: the "
                     "commands that use it serve it on 127.0.0.1 themselves")
    url = str(cfg.api_url).rstrip("/")
    try:
        with urllib.request.urlopen(url + "/", timeout=timeout_s) as r:
            landing = json.load(r)
        with urllib.request.urlopen(f"{url}/collections/{cfg.collection}",
                                    timeout=timeout_s) as r:
            json.load(r)
    except urllib.error.HTTPError as exc:
        what = f"collection {cfg.collection!r} not found" if exc.code == 404 else str(exc)
        return Check("stac", False, f"{url}: {what} (check stac.api_url / stac.collection)")
    except (OSError, ValueError) as exc:
        return Check("stac", False, f"{url} unreachable: {exc} (check stac.api_url and the "
                     "network)")
    conforms = " ".join(landing.get("conformsTo", []))
    ok = "item-search" in conforms
    return Check("stac", ok, f"{url}: collection {cfg.collection!r}" +
                 (", item search available" if ok else ", NO item-search conformance"))


def check_ais(cfg: AisConfig, timeout_s: float = 10.0) -> Check:
    """The websocket endpoint accepts a TCP (and TLS for wss) connection; the API key is set.
    No subscription is sent, so no quota is used and the key never leaves the machine."""
    parts = urlsplit(cfg.url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        return Check("ais", False, f"ais.url {cfg.url!r} is not a ws:// or wss:// URL")
    port = parts.port or (443 if parts.scheme == "wss" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout_s) as sock:
            if parts.scheme == "wss":
                ctx = ssl.create_default_context()
                with ctx.wrap_socket(sock, server_hostname=parts.hostname):
                    pass
    except OSError as exc:
        return Check("ais", False, f"{parts.scheme}://{parts.hostname}:{port} unreachable: "
                     f"{exc} (check ais.url and the network)")
    key = "API key set" if cfg.api_key else "NO API key (set AISSTREAM_API_KEY in the " \
        "environment or .env to capture)"
    return Check("ais", cfg.api_key is not None,
                 f"{parts.scheme}://{parts.hostname}:{port} reachable; {key}")


def run_doctor(cfg: Config, *, network: bool = True, db_path: Path | None = None,
               skip: Collection[str] = ()) -> list[Check]:
    """Every check in order: environment, packages, GDAL, storage, ops DB, then (with
    ``network``) the STAC endpoint and the AIS endpoint, less those named in ``skip``
    (``"stac"``, ``"ais"``: not run at all).

    Showing the checks is the caller's job (``s2xr doctor`` prints each once): each is
    logged at DEBUG only, and one INFO line sums them up for the log file."""
    checks: list[Check] = [Check("config", True, "loaded and valid"), check_python()]
    checks += check_packages()
    steps: list[tuple[str, Callable[[], Check]]] = [
        ("gdal", check_gdal), ("storage", lambda: check_storage(Path(cfg.storage.root))),
        ("ops db", lambda: check_ops_db(db_path or DatasetLayout.of(cfg).ops_db))]
    if network:
        steps += [("stac", lambda: check_stac(cfg.stac)), ("ais", lambda: check_ais(cfg.ais))]
    for name, step in steps:
        if name in skip:
            continue
        try:
            checks.append(step())
        except Exception as exc:  # a check that crashes is a failed check, not a traceback
            checks.append(Check(name, False, f"{type(exc).__name__}: {exc}"))
    for c in checks:
        log.debug("doctor %s: %s %s", c.name, "ok" if c.ok else "FAIL", c.detail)
    failed = [c.name for c in checks if not c.ok]
    log.info("doctor: %d check(s), %d failed%s", len(checks), len(failed),
             f" ({', '.join(failed)})" if failed else "")
    return checks
