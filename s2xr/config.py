"""Typed configuration: one YAML file, one frozen section per stage.

Each stage takes only its own section (``StacConfig`` for search, ``ChipSpec`` for cutting,
``GateConfig`` for the gate, ...), never the whole config. Load with :func:`load_config`:

* unknown keys and bad values raise :class:`~s2xr.errors.ConfigError` naming the key;
* environment variables ``S2XR_<SECTION>__<KEY>`` override the file (values parsed as YAML,
  e.g. ``S2XR_STAC__MAX_CLOUD=20``, ``S2XR_CHIP__BANDS='[red, nir]'``);
* the AIS API key comes only from ``AISSTREAM_API_KEY`` in the environment or a ``.env``
  file, is held as a ``SecretStr`` and never printed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)

from s2xr.errors import ConfigError

REFLECTANCE_BANDS = ("coastal", "blue", "green", "red", "rededge1", "rededge2", "rededge3",
                     "nir", "nir08", "nir09", "swir16", "swir22")
SWIR_BANDS = ("swir16", "swir22")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StacConfig(_Section):
    """Where and how to search Sentinel-2 L2A items."""

    api_url: str | None = "https://earth-search.aws.element84.com/v1"
    catalog: Path | None = None  # a static catalog.json / ItemCollection file instead of an API
    collection: str = "sentinel-2-c1-l2a"
    window_hours: float = Field(12.0, gt=0, description="± hours around each AIS time")
    max_cloud: float = Field(100.0, ge=0, le=100, description="eo:cloud_cover ≤ this (%)")
    page_size: int = Field(100, ge=1, le=1000)
    max_retries: int = Field(5, ge=0)
    backoff_s: float = Field(1.0, ge=0)
    timeout_s: float = Field(60.0, gt=0)
    engine: Literal["s2xr", "stackstac", "odc-stac"] = "s2xr"
    io_threads: int = Field(16, ge=1, le=256, description="remote COG range requests in "
                            "flight per process (s2xr engine)")
    read_timeout_s: float = Field(30.0, gt=0, description="seconds one remote COG range "
                                  "request may take before it is retried (s2xr engine)")


class ChipSpec(_Section):
    """Chip geometry and bands."""

    size: int = Field(256, ge=8, le=4096, description="chip edge in pixels")
    resolution: float = Field(10.0, gt=0, description="output pixel size in metres")
    bands: tuple[str, ...] = ("blue", "green", "red", "nir")
    include_swir: bool = True
    resampling: Literal["bilinear", "cubic", "nearest"] = "bilinear"
    batch_size: int = Field(32, ge=1, description="chips per Dask task")

    @field_validator("bands")
    @classmethod
    def _known_bands(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        bad = [b for b in v if b not in REFLECTANCE_BANDS]
        if bad:
            raise ValueError(f"unknown band(s) {bad}; use Earth Search asset keys "
                             f"{list(REFLECTANCE_BANDS)}")
        if len(set(v)) != len(v):
            raise ValueError("bands must not repeat")
        return v

    @property
    def all_bands(self) -> tuple[str, ...]:
        """Reflectance bands in cube order (SWIR appended when ``include_swir``)."""
        extra = tuple(b for b in SWIR_BANDS if self.include_swir and b not in self.bands)
        return self.bands + extra


class GateConfig(_Section):
    """Chip quality gate (SCL fractions and NDWI water fraction)."""

    enabled: bool = True
    centre_px: int = Field(64, ge=1)
    max_cloud: float = Field(0.05, ge=0, le=1)
    max_land: float = Field(0.2, ge=0, le=1)
    ndwi_threshold: float = Field(0.05, ge=-1, le=1)
    min_water: float = Field(0.5, ge=0, le=1)
    cloud_includes_shadow: bool = False
    min_valid: float = Field(0.5, ge=0, le=1, description="min valid-pixel fraction")


class StorageConfig(_Section):
    """Dataset layout under ``root``: a local directory, or an object store URL
    (``s3://bucket/prefix``, ``gs://…``, ``memory://…``: any fsspec URL).

    Given a URL, ``url`` holds it and ``root`` becomes the local *workspace* of that dataset
    (``workspace``, default :func:`default_workspace`): its ops DB, lock and the staged
    copies of the files the client writes (index, footprints, STAC, reports), pushed to the
    store at every commit (:mod:`s2xr.store.sync`). Chip files and the cube are written
    straight to ``url`` by the tasks that cut them. ``model_dump`` gives the URL back as
    ``root``, so a dumped config validates to the same one."""

    root: Path = Path("./s2xr-demo")
    url: str | None = Field(None, exclude=True)  # set from a URL root, never given itself
    workspace: Path | None = None
    write_zarr: bool = True
    write_geotiff: bool = True
    write_quicklook: bool = True
    block_size: int = Field(32, ge=1, description="chips computed and written per block")

    @model_validator(mode="before")
    @classmethod
    def _url_root(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        if data.get("url") is not None:
            raise ValueError("url: not a setting; give the object store URL as storage.root "
                             "(s3://bucket/prefix)")
        root = data.get("root")
        if not (isinstance(root, str) and is_url(root)):
            if data.get("workspace") is not None:
                raise ValueError("workspace: only for an object store root (storage.root: "
                                 "s3://bucket/prefix); a local root is its own workspace")
            return data
        if isinstance(root, str) and is_url(root):
            url = root.rstrip("/")
            ws = data.get("workspace")
            return {**data, "url": url,
                    "root": Path(ws) if ws is not None else default_workspace(url)}
        return data

    @field_serializer("root")
    def _dump_root(self, root: Path) -> str:
        return self.url if self.url is not None else str(root)


def is_url(root: str | Path) -> bool:
    """``root`` names an object store (``scheme://…``; ``file://`` is a local path)."""
    text = str(root) if isinstance(root, str) else ""
    return "://" in text and not text.startswith("file://")


def default_workspace(url: str) -> Path:
    """The local workspace of the dataset at ``url`` when ``storage.workspace`` is not set:
    ``$XDG_CACHE_HOME/s2xr/workspaces/{scheme}/{bucket}/{prefix}`` (``~/.cache`` when
    ``XDG_CACHE_HOME`` is unset)."""
    scheme, _, rest = url.partition("://")
    parts = [p for p in rest.split("/") if p not in ("", ".", "..")]
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base, "s2xr", "workspaces", scheme, *parts)


class SplitConfig(_Section):
    """Train/val/test assignment."""

    strategy: Literal["chip", "mmsi", "scene", "tile"] = "mmsi"
    train: float = Field(0.8, ge=0, le=1)
    val: float = Field(0.1, ge=0, le=1)
    test: float = Field(0.1, ge=0, le=1)
    salt: str = "s2xr"


class OpsConfig(_Section):
    """Operations: retries and lags."""

    db_path: Path | None = None  # default: {storage.root}/ops.sqlite
    max_retries: int = Field(5, ge=0)
    initial_backoff_min: float = Field(5.0, ge=0)
    max_backoff_hours: float = Field(24.0, ge=0)
    lag_days: float = Field(2.0, ge=0)
    prune_max_share: float = Field(0.2, ge=0, le=1)  # s2xr prune refuses more without --force
    pruned_retention_days: float = Field(7.0, ge=0)  # s2xr vacuum empties older pruned/ areas


class DaskConfig(_Section):
    """Which Dask scheduler runs the chip graph."""

    scheduler: str = "threads"  # threads | processes | synchronous | local-cluster | tcp://...
    n_workers: int = Field(2, ge=1)
    threads_per_worker: int = Field(1, ge=1)

    @field_validator("scheduler")
    @classmethod
    def _known_scheduler(cls, v: str) -> str:
        if v in {"threads", "processes", "synchronous", "local-cluster"} or v.startswith("tcp://"):
            return v
        raise ValueError("use threads, processes, synchronous, local-cluster or tcp://host:port")


class AisConfig(_Section):
    """AIS positions: interpolation limits and the capture endpoint."""

    url: str = "wss://stream.aisstream.io/v0/stream"
    max_extrapolation_s: float = Field(120.0, ge=0)
    max_interpolation_gap_s: float = Field(1800.0, gt=0)
    api_key: SecretStr | None = Field(None, exclude=True, repr=False)
    # capture (s2xr collect-ais)
    boxes: tuple[tuple[float, float, float, float], ...] = Field(
        (), description="capture boxes as (south, west, north, east) degrees")
    mmsi: tuple[str, ...] = Field((), description="only these MMSIs (9-digit strings)")
    watchdog_s: float = Field(120.0, gt=0, description="reconnect after this long silent")
    backoff_initial_s: float = Field(1.0, ge=0)
    backoff_max_s: float = Field(300.0, ge=0)
    flush_rows: int = Field(2000, ge=1, description="rows buffered before a write")
    flush_interval_s: float = Field(30.0, gt=0)
    random_sampling_per_day: int = Field(0, ge=0, description="distinct MMSIs kept per day "
                                         "in the capture's random sample file (0: off)")
    write_xlsx: bool = False
    schedule_pad_s: float = Field(0.0, ge=0, description="widen schedule windows (s)")


class PlanningConfig(_Section):
    """Overpass planning."""

    mode: Literal["tle", "esa_plan", "backfill", "auto"] = "auto"
    tiles: tuple[str, ...] = ()
    prediction_days: int = Field(10, ge=1)
    overpass_window_minutes: float = Field(10.0, ge=0)
    tle_path: str | None = None  # file or http(s) URL; None: the bundled TLEs
    esa_plan_path: str | None = None  # KML/KML.gz/KMZ/CSV file, a folder, or a comma list
    esa_plan_urls: tuple[str, ...] = Field((), description="ESA plan KMLs to fetch (optional)")
    tle_max_age_days: float = Field(30.0, gt=0, description="warn when the TLE epoch is "
                                    "further than this from the predicted dates")


class DemoConfig(_Section):
    """The embedded synthetic world."""

    tile: str = "30STE"
    centre_lon: float = -5.45
    centre_lat: float = 35.98
    window_px: int = Field(2048, ge=512, le=10980)
    n_scenes: int = Field(3, ge=1)
    n_ships: int = Field(40, ge=1)
    first_date: str = "2026-09-30"
    seed: int = 20260930


class Config(_Section):
    """The whole configuration; pass its sections, not this object, to the stages."""

    stac: StacConfig = StacConfig()
    chip: ChipSpec = ChipSpec()
    gate: GateConfig = GateConfig()
    storage: StorageConfig = StorageConfig()
    splits: SplitConfig = SplitConfig()
    ops: OpsConfig = OpsConfig()
    dask: DaskConfig = DaskConfig()
    ais: AisConfig = AisConfig()
    planning: PlanningConfig = PlanningConfig()
    demo: DemoConfig = DemoConfig()


ENV_PREFIX = "S2XR_"


def _env_overrides(environ: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for key, raw in environ.items():
        if not key.startswith(ENV_PREFIX) or "__" not in key:
            continue
        section, _, field = key[len(ENV_PREFIX):].lower().partition("__")
        try:
            value = yaml.safe_load(raw) if raw != "" else None
        except yaml.YAMLError as exc:
            raise ConfigError(f"environment variable {key}: not valid YAML ({exc})") from None
        out.setdefault(section, {})[field] = value
    return out


def _read_api_key(environ: Mapping[str, str], dotenv_path: Path | None) -> SecretStr | None:
    key = environ.get("AISSTREAM_API_KEY")
    if not key and dotenv_path is not None and dotenv_path.is_file():
        from dotenv import dotenv_values

        key = dotenv_values(dotenv_path).get("AISSTREAM_API_KEY")
    return SecretStr(key) if key else None


def _format_errors(exc: ValidationError, source: str) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            lines.append(f"{loc}: unknown key (check spelling; see docs/configuration.md)")
        else:
            lines.append(f"{loc}: {err['msg']} (got {err.get('input')!r})")
    return f"invalid configuration in {source}:\n  " + "\n  ".join(lines)


def build_config(data: Mapping[str, Any] | None = None, *, source: str = "<dict>",
                 environ: Mapping[str, str] | None = None,
                 dotenv_path: Path | None = Path(".env")) -> Config:
    """Validate a mapping (plus environment overrides) into a :class:`Config`."""
    environ = os.environ if environ is None else environ
    merged: dict[str, Any] = {k: dict(v) if isinstance(v, Mapping) else v
                              for k, v in (data or {}).items()}
    for section, values in _env_overrides(environ).items():
        base = merged.get(section) or {}
        if not isinstance(base, Mapping):
            raise ConfigError(f"{section}: must be a mapping of keys, got {base!r}")
        merged[section] = {**base, **values}
    if "api_key" in (merged.get("ais") or {}):
        raise ConfigError("ais.api_key: never put the API key in a config file; set "
                          "AISSTREAM_API_KEY in the environment or in .env")
    try:
        cfg = Config.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, source)) from None
    key = _read_api_key(environ, dotenv_path)
    if key is not None:
        cfg = cfg.model_copy(update={"ais": cfg.ais.model_copy(update={"api_key": key})})
    return cfg


def load_config(path: str | Path | None = None, *, environ: Mapping[str, str] | None = None,
                dotenv_path: Path | None = Path(".env")) -> Config:
    """Load a YAML config file (or defaults when ``path`` is None) → :class:`Config`.

    Relative ``storage.root`` / ``stac.catalog`` paths are kept as written (relative to the
    working directory, like every CLI path).
    """
    data: dict[str, Any] = {}
    source = "<defaults>"
    if path is not None:
        p = Path(path)
        source = str(p)
        if not p.is_file():
            raise ConfigError(f"config file {p} does not exist; pass --config with a YAML file "
                              "such as configs/demo.yaml")
        try:
            loaded = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {p} is not valid YAML: {exc}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {p}: top level must be a mapping of sections")
        data = loaded
    return build_config(data, source=source, environ=environ, dotenv_path=dotenv_path)


def with_overrides(cfg: Config, sections: Mapping[str, Mapping[str, Any]], *,
                   source: str = "overrides") -> Config:
    """A new :class:`Config` from ``cfg`` with ``{section: {key: value}}`` replaced, validated
    like a file (bad keys and values raise ``ConfigError``). The AIS API key is carried over
    in memory, never serialised."""
    data = cfg.model_dump(mode="json", exclude={"ais": {"api_key"}})
    for name, values in sections.items():
        if name not in data:
            raise ConfigError(f"{name}: unknown config section")
        data[name].update(values)
    out = build_config(data, source=source, environ={}, dotenv_path=None)
    if cfg.ais.api_key is not None:
        out = out.model_copy(update={"ais": out.ais.model_copy(
            update={"api_key": cfg.ais.api_key})})
    return out
