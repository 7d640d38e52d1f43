"""Dataset layout under the storage root, with validated path parts (no traversal)."""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from s2xr.errors import StorageError

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
    return root / "chips" / split / safe_mmsi(mmsi) / f"{pd.Timestamp(when):%Y%m%d}" / chip_id


def ensure_writable(root: Path) -> None:
    """Create ``root`` and prove it is writable, or raise ``StorageError`` saying so."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=root, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise StorageError(f"storage.root {root} is not writable: {exc.strerror or exc}; "
                           "choose another --out / storage.root") from exc


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` for a temp file beside ``path``, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8, newlines as given) to ``path`` via a temp file and a rename."""
    atomic_write(path, lambda p: p.write_text(text, encoding="utf-8", newline=""))
