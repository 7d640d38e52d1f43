"""Where every file of a dataset lives: :class:`DatasetLayout`, the one place a dataset path
is spelled; plus validated path parts (no traversal) and atomic writes.

Under the dataset root (``storage.root``)::

    indexes/tiles.parquet             chip index (GeoParquet), one row per cut chip
    indexes/tiles_YYYYMMDD.geojson    footprints of that day's chips
    indexes/rejects.parquet           points/items/chips without a chip, with the reason
    indexes/labels.parquet            ship labels (boxes/points) per chip
    indexes/ais_observations.parquet  the dataset's AIS observations (see below)
    indexes/chips.stac.parquet        stac-geoparquet of the chips (``publish-stac``)
    chips.zarr/                       the chip cube (Zarr v3, consolidated metadata)
    chips/{split}/{mmsi}/{YYYYMMDD}/{chip_id}.tif|.json|.geojson|.jpg
    ops.sqlite                        ops DB: runs, chip jobs, capture windows
                                      (``ops.db_path`` may put it elsewhere)
    .s2xr.lock                        the dataset's write lock
    .s2xr-run.json, .s2xr-sync.json   the last run's status (stage, counts, log tail); the
                                      sync record of an object store dataset's workspace
    plan/overpass_schedule.csv        the overpass schedule (+ plan/schedules/ copies)
    ais/YYYYMMDD/aisstream_raw.jsonl, ais_overpass_{tile}.parquet, ais_outside_tiles.parquet,
        ais_static.parquet, ais_random_sample.parquet       the AIS capture by UTC day
    ais/runs/run-{run_id}.parquet     the AIS points a run chipped (``dry-run-…`` synthetic)
    ais/uploads/{time}-{name}         AIS files uploaded in the dashboard
    stac/catalog.json                 the published STAC catalog
    reports/qa_report.html            the QA report
    manifest.json, dataset.yaml, DATASET.md     manifest and dataset card
    pruned/YYYYMMDDTHHMMSS/           what a prune moved aside: prune.json,
                                      index_rows.parquet, chips.zarr/, chips/
    world/world.json                  the embedded (synthetic) world, when used
    quicklooks.png                    the demo's contact sheet
    exports/                          label exports (COCO, YOLO-OBB)

**AIS observations have one home**, ``indexes/ais_observations.parquet``: the capture merges
every position it stores into it, the chip job merges the fixes its chips depend on, prune
reads it (:mod:`s2xr.ops.observations`). Datasets written before kept the chip job's fixes
in the ops DB table ``ais_observations`` as well: they are still read from there, and the
next chip job moves them into the parquet file and empties the table.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import secrets
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from s2xr.errors import StorageError

if TYPE_CHECKING:
    from s2xr.config import Config, StorageConfig

SPLITS = ("train", "val", "test")
_MMSI = re.compile(r"^\d{9}$")
_TILE = re.compile(r"^\d{2}[C-X][A-Z]{2}$")
_CHIP = re.compile(r"^[0-9a-f]{16}$")


def safe_mmsi(mmsi: int | str) -> str:
    s = str(mmsi)
    if not _MMSI.fullmatch(s):
        raise StorageError(f"mmsi {mmsi!r} is not 9 digits; refusing to use it in a path")
    return s


def safe_tile(tile_id: str) -> str:
    if not _TILE.fullmatch(str(tile_id)):
        raise StorageError(f"tile_id {tile_id!r} is not a tile ID like 30STE; refusing to use "
                           "it in a path")
    return str(tile_id)


def chip_stem(root: Path, split: str, mmsi: int | str, when: pd.Timestamp, chip_id: str) -> Path:
    """``{root}/chips/{split}/{mmsi}/{YYYYMMDD}/{chip_id}`` (add the suffix)."""
    if split not in SPLITS:
        raise StorageError(f"split {split!r} must be one of {SPLITS}")
    if not _CHIP.fullmatch(chip_id):
        raise StorageError(f"chip_id {chip_id!r} is not 16 hex digits")
    return (DatasetLayout(root).chips / split / safe_mmsi(mmsi) / f"{pd.Timestamp(when):%Y%m%d}"
            / chip_id)


def ensure_writable(root: Path) -> None:
    """Create ``root`` and prove it is writable, or raise ``StorageError`` saying so."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=root, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise StorageError(f"storage.root {root} is not writable: {exc.strerror or exc}; "
                           "choose another --out / storage.root") from exc


def temp_beside(path: Path, *, directory: bool = False) -> Path:
    """Create an empty ``.{name}.XXXXXXXX.tmp`` file (or directory) beside ``path`` with the
    mode a new file (directory) gets: 0666 (0777) less the process umask, so 0644 (0755)
    under the usual 022. The kernel applies the umask; it is never read or set here (setting
    it races with other threads). ``tempfile.mkstemp``/``mkdtemp`` make private 0600/0700
    ones, which nobody else could read once renamed into place."""
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            if directory:
                os.mkdir(tmp, 0o777)
            else:
                os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(f"no free temp name beside {path}")


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` for a temp file beside ``path``, then rename it into place. The
    file gets the mode any new file gets (0666 less the umask)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_beside(path)
    try:
        write(tmp)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[Path]:
    """Hold an exclusive advisory lock on ``path`` (a ``.{name}.lock`` file beside it),
    waiting for it: for a file more than one process merges into (read, change, rename)."""
    path = Path(path)
    lock = path.parent / f".{path.name}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield lock
    finally:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8, newlines as given) to ``path`` via a temp file and a rename."""
    def write(p: Path) -> None:
        p.write_text(text, encoding="utf-8", newline="")

    atomic_write(path, write)


@dataclass(frozen=True)
class DatasetLayout:
    """Every file and directory of the dataset under ``root`` (see the module docstring).

    ``DatasetLayout(root).index`` etc. are absolute when ``root`` is; ``DatasetLayout(Path())``
    gives the paths relative to a root. ``ops_db_path``: the ops DB when ``ops.db_path`` puts
    it outside the root (:meth:`of` reads it from the config)."""

    root: Path
    ops_db_path: Path | None = None
    remote: str | None = None  # the object store URL of a dataset whose ``root`` is its workspace

    # names (the only place they are spelled; tests/test_layout.py checks it)
    INDEXES = "indexes"
    INDEX = "tiles.parquet"
    FOOTPRINTS = "tiles_{day}.geojson"
    REJECTS = "rejects.parquet"
    LABELS = "labels.parquet"
    AIS_OBSERVATIONS = "ais_observations.parquet"
    STAC_GEOPARQUET = "chips.stac.parquet"
    CUBE = "chips.zarr"
    ZARR_META = "zarr.json"
    CHIPS = "chips"
    OPS_DB = "ops.sqlite"
    LOCK = ".s2xr.lock"
    RUN_STATUS = ".s2xr-run.json"
    SYNC_STATE = ".s2xr-sync.json"
    PLAN = "plan"
    SCHEDULE = "overpass_schedule.csv"
    AIS = "ais"
    AIS_RAW = "aisstream_raw.jsonl"
    AIS_OVERPASS = "ais_overpass_{tile}.parquet"
    AIS_OUTSIDE = "ais_outside_tiles.parquet"
    AIS_STATIC = "ais_static.parquet"
    AIS_SAMPLE = "ais_random_sample.parquet"
    AIS_RUNS = "runs"
    AIS_UPLOADS = "uploads"
    STAC = "stac"
    STAC_CATALOG = "catalog.json"
    REPORTS = "reports"
    QA_REPORT = "qa_report.html"
    MANIFEST = "manifest.json"
    CARD_YAML = "dataset.yaml"
    CARD_MD = "DATASET.md"
    PRUNED = "pruned"
    AREA_MANIFEST = "prune.json"
    AREA_INDEX = "index_rows.parquet"
    WORLD = "world"
    WORLD_MANIFEST = "world.json"
    QUICKLOOKS = "quicklooks.png"
    EXPORTS = "exports"

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))
        if self.ops_db_path is not None:
            object.__setattr__(self, "ops_db_path", Path(self.ops_db_path))

    @classmethod
    def of(cls, cfg: Config) -> DatasetLayout:
        """The layout of ``cfg.storage.root`` (ops DB at ``ops.db_path`` when set)."""
        return cls.of_storage(cfg.storage, cfg.ops.db_path)

    @classmethod
    def of_storage(cls, storage: StorageConfig, ops_db_path: Path | None = None
                   ) -> DatasetLayout:
        """The layout of a storage section: for an object store root (``storage.url``),
        ``root`` is its local workspace and ``remote`` the URL."""
        return cls(Path(storage.root), Path(ops_db_path) if ops_db_path else None,
                   storage.url)

    @property
    def data_root(self) -> str | Path:
        """Where the chip files and the cube are: the object store URL, else ``root``."""
        return self.remote if self.remote is not None else self.root

    # -- indexes ---------------------------------------------------------------------
    @property
    def indexes(self) -> Path:
        return self.root / self.INDEXES

    @property
    def index(self) -> Path:
        """The chip index (GeoParquet)."""
        return self.indexes / self.INDEX

    def footprints(self, day: str) -> Path:
        """The footprints of one UTC day's chips (``day``: ``YYYYMMDD``)."""
        return self.indexes / self.FOOTPRINTS.format(day=day)

    @property
    def rejects(self) -> Path:
        return self.indexes / self.REJECTS

    @property
    def labels(self) -> Path:
        return self.indexes / self.LABELS

    @property
    def ais_observations(self) -> Path:
        """The dataset's AIS observations (their one home; see the module docstring)."""
        return self.indexes / self.AIS_OBSERVATIONS

    @property
    def stac_geoparquet(self) -> Path:
        return self.indexes / self.STAC_GEOPARQUET

    # -- chips -----------------------------------------------------------------------
    @property
    def cube(self) -> Path:
        """The Zarr chip cube."""
        return self.root / self.CUBE

    @property
    def has_cube(self) -> bool:
        """A cube was written (its root metadata exists)."""
        return (self.cube / self.ZARR_META).exists()

    @property
    def chips(self) -> Path:
        """The per-chip files (GeoTIFF, JSON, GeoJSON, quicklook)."""
        return self.root / self.CHIPS

    def chip_stem(self, split: str, mmsi: int | str, when: pd.Timestamp, chip_id: str) -> Path:
        """``chips/{split}/{mmsi}/{YYYYMMDD}/{chip_id}`` (add the suffix); validated."""
        return chip_stem(self.root, split, mmsi, when, chip_id)

    # -- operations ------------------------------------------------------------------
    @property
    def ops_db(self) -> Path:
        """The ops DB (``ops.db_path`` when set, else ``ops.sqlite`` under the root)."""
        return self.ops_db_path if self.ops_db_path is not None else self.root / self.OPS_DB

    @property
    def lock(self) -> Path:
        """The dataset's write lock file."""
        return self.root / self.LOCK

    @property
    def run_status(self) -> Path:  # the last run's status (pipelines.run_status)
        return self.root / self.RUN_STATUS

    @property
    def sync_state(self) -> Path:  # a workspace's sync record (s2xr.store.sync)
        return self.root / self.SYNC_STATE

    @property
    def plan(self) -> Path:
        return self.root / self.PLAN

    @property
    def schedule(self) -> Path:
        """The overpass schedule CSV."""
        return self.plan / self.SCHEDULE

    # -- AIS -------------------------------------------------------------------------
    @property
    def ais(self) -> Path:
        return self.root / self.AIS

    def ais_day(self, day: pd.Timestamp | str) -> Path:
        """``ais/YYYYMMDD`` of a UTC day (a ``YYYYMMDD`` string or a time)."""
        if isinstance(day, str) and re.fullmatch(r"\d{8}", day):
            return self.ais / day
        d = pd.Timestamp(day)
        d = d.tz_convert("UTC") if d.tzinfo else d
        return self.ais / d.strftime("%Y%m%d")

    def ais_overpass(self, day: pd.Timestamp | str, tile: str | None) -> Path:
        """The day's capture file of one tile (``None``: of the fixes outside every tile)."""
        name = self.AIS_OVERPASS.format(tile=tile) if tile else self.AIS_OUTSIDE
        return self.ais_day(day) / name

    @property
    def ais_runs(self) -> Path:
        return self.ais / self.AIS_RUNS

    def run_ais(self, run_id: str, *, dry_run: bool = False) -> Path:
        """The AIS points a run chipped (``dry_run``: the embedded world's synthetic AIS)."""
        return self.ais_runs / f"{'dry-run' if dry_run else 'run'}-{run_id}.parquet"

    @property
    def ais_uploads(self) -> Path:
        return self.ais / self.AIS_UPLOADS

    # -- published -------------------------------------------------------------------
    @property
    def stac(self) -> Path:
        return self.root / self.STAC

    @property
    def stac_catalog(self) -> Path:
        return self.stac / self.STAC_CATALOG

    @property
    def qa_report(self) -> Path:
        return self.root / self.REPORTS / self.QA_REPORT

    @property
    def manifest(self) -> Path:
        return self.root / self.MANIFEST

    @property
    def card_yaml(self) -> Path:
        return self.root / self.CARD_YAML

    @property
    def card_md(self) -> Path:
        return self.root / self.CARD_MD

    @property
    def exports(self) -> Path:
        return self.root / self.EXPORTS

    @property
    def quicklooks(self) -> Path:
        return self.root / self.QUICKLOOKS

    # -- pruned areas ----------------------------------------------------------------
    @property
    def pruned(self) -> Path:
        """Where prunes move what they remove, one area per prune."""
        return self.root / self.PRUNED

    def area_manifest(self, area: Path) -> Path:
        return Path(area) / self.AREA_MANIFEST

    def area_index(self, area: Path) -> Path:
        return Path(area) / self.AREA_INDEX

    # -- the embedded world ----------------------------------------------------------
    @property
    def world(self) -> Path:
        return self.root / self.WORLD

    @property
    def world_manifest(self) -> Path:
        return self.world / self.WORLD_MANIFEST
