"""Dataset locations that are local paths or object store URLs (``s3://bucket/prefix``,
``gs://…``, ``memory://…``), through fsspec; and :class:`FileSink`, how a batch's chip files
reach the dataset: renamed into place on a local disk, put as whole objects in a store.

Credentials and endpoints come from the store's usual environment (for S3:
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL``, ``AWS_PROFILE``, …),
read by the store's own library (s3fs, gcsfs, adlfs); s2xr never reads, logs or stores them.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol, TypeGuard

from s2xr.config import is_url
from s2xr.errors import StorageError
from s2xr.store.layout import DatasetLayout, atomic_write, ensure_writable

__all__ = ["FileSink", "LocalFiles", "StoreFiles", "check_writable", "cube_at",
           "ensure_dataset_writable", "exists",
           "filesystem", "has_zarr", "is_url", "join", "list_files", "open_sink",
           "read_bytes", "remove", "remove_tree"]


def _remote(location: str | Path) -> TypeGuard[str]:
    """``location`` is an object store URL (a ``str``), not a local path."""
    return isinstance(location, str) and is_url(location)


def join(root: str | Path, *parts: str) -> str | Path:
    """``root / parts`` for a local path, ``root/parts`` for a URL."""
    if _remote(root):
        return "/".join([root.rstrip("/"), *(p.strip("/") for p in parts)])
    return Path(root, *parts)


def cube_at(root: str | Path) -> str | Path:
    """The chip cube of the dataset at ``root`` (a path or a URL)."""
    return join(root, DatasetLayout.CUBE)


def has_zarr(location: str | Path) -> bool:
    """``location`` (a path or a URL) holds a Zarr v3 group (its root metadata exists)."""
    return exists(join(location, DatasetLayout.ZARR_META))


def filesystem(url: str) -> tuple[Any, str]:
    """``(fsspec filesystem, path in it)`` of an object store URL. Raises ``StorageError``
    when the store's library is missing (``pip install 's2xr[s3]'`` for S3)."""
    import fsspec

    try:
        return fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as exc:
        raise StorageError(f"storage.root {url.split('://')[0]}://…: no filesystem for it "
                           f"({exc}); install its fsspec package, e.g. pip install "
                           "'s2xr[s3]' for s3://") from None


def exists(location: str | Path) -> bool:
    if _remote(location):
        fs, path = filesystem(location)
        return bool(fs.exists(path))
    return Path(location).exists()


def read_bytes(location: str | Path) -> bytes | None:
    """The whole file at ``location`` (a path or a URL), or ``None`` if there is none."""
    if _remote(location):
        fs, path = filesystem(location)
        try:
            return bytes(fs.cat_file(path))
        except FileNotFoundError:
            return None
    try:
        return Path(location).read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        return None


def remove_tree(location: str | Path) -> None:
    """Delete a directory (a prefix in a store) and everything under it, if it exists."""
    if _remote(location):
        fs, path = filesystem(location)
        if fs.exists(path):
            fs.rm(path, recursive=True)
        return
    shutil.rmtree(location, ignore_errors=True)


def list_files(location: str | Path) -> list[str]:
    """Every file under ``location``, as paths relative to it (``/``-separated)."""
    if _remote(location):
        fs, path = filesystem(location)
        if not fs.exists(path):
            return []
        base = path.rstrip("/") + "/"
        return [f[len(base):] for f in fs.find(path) if f.startswith(base)]
    root = Path(location)
    if not root.exists():
        return []
    return [f.relative_to(root).as_posix() for f in root.rglob("*") if f.is_file()]


def remove(location: str | Path, names: list[str]) -> None:
    """Delete files ``names`` (relative to ``location``): one batch request in a store."""
    if not names:
        return
    if _remote(location):
        fs, path = filesystem(location)
        fs.rm([f"{path.rstrip('/')}/{n}" for n in names])
        return
    for n in names:
        Path(location, n).unlink(missing_ok=True)


def check_writable(url: str) -> None:
    """Put and delete a probe object under ``url``, or raise ``StorageError`` naming the
    URL and the store's reason (never the credentials)."""
    import secrets

    fs, path = filesystem(url)
    probe = f"{path.rstrip('/')}/.write-test-{secrets.token_hex(4)}"
    try:
        fs.pipe(probe, b"")
        fs.rm(probe)
    except Exception as exc:  # every store raises its own kinds
        raise StorageError(f"storage.root {url} is not writable: {type(exc).__name__}: "
                           f"{exc}; check the bucket exists and the store's credentials "
                           "(e.g. AWS_ACCESS_KEY_ID, AWS_ENDPOINT_URL) in the environment"
                           ) from None


def ensure_dataset_writable(layout: DatasetLayout) -> None:
    """Prove the dataset's local root (the workspace of an object store root) and its
    store (when it has one) writable, or raise ``StorageError`` naming which and why."""
    ensure_writable(layout.root)
    if layout.remote is not None:
        check_writable(layout.remote)


class FileSink(Protocol):
    """Where a batch's chip files go. ``write(rel, fill)``: ``fill(path)`` writes one file at
    a local ``path``; the file appears at ``rel`` (relative to the dataset root) whole or not
    at all — at once (local) or when the sink closes (store)."""

    def write(self, rel: str, fill: Callable[[Path], None]) -> None: ...


class LocalFiles:
    """A local dataset: each file written to a temp name beside its place and renamed."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def write(self, rel: str, fill: Callable[[Path], None]) -> None:
        atomic_write(self.root / rel, fill)


class StoreFiles:
    """An object store dataset: files are staged in a local temp directory and put as whole
    objects (PUT is atomic: a reader sees all of an object or none) in one concurrent
    upload by :meth:`close`."""

    def __init__(self, url: str) -> None:
        self.fs, self.path = filesystem(url)
        self._tmp = Path(tempfile.mkdtemp(prefix="s2xr-put-"))
        self._staged: list[tuple[Path, str]] = []

    def write(self, rel: str, fill: Callable[[Path], None]) -> None:
        local = self._tmp / f"{len(self._staged)}{Path(rel).suffix}"
        fill(local)
        self._staged.append((local, f"{self.path.rstrip('/')}/{rel}"))

    def close(self) -> None:
        try:
            if self._staged:
                self.fs.put([str(a) for a, _ in self._staged], [b for _, b in self._staged])
        finally:
            self._staged.clear()
            shutil.rmtree(self._tmp, ignore_errors=True)


@contextlib.contextmanager
def open_sink(root: str | Path) -> Iterator[FileSink]:
    """The sink of the dataset at ``root`` (a path or a URL); a store's files are uploaded
    when the block ends without an error (after one, nothing of the batch is put)."""
    if not (_remote(root)):
        yield LocalFiles(Path(root))
        return
    sink = StoreFiles(root)
    ok = False
    try:
        yield sink
        ok = True
    finally:
        if ok:
            sink.close()
        else:
            sink._staged.clear()
            sink.close()
