"""A dataset in an object store and its local workspace.

With ``storage.root: s3://bucket/prefix`` the tasks that cut chips put the chip files and the
cube's regions straight into the store (:mod:`s2xr.store.batch`). Everything the *client*
writes — index, rejects, labels, footprints, AIS capture, schedule, STAC catalog, reports,
manifest and card — is written, with the local code and its atomic renames, into the
dataset's workspace (``storage.workspace``), and :func:`push` puts each file that changed
there into the store as a whole object, **the index last**: putting the index is the commit
(docs/formats.md, "Commit protocol"). :func:`pull` brings the workspace up to the store
before a job (the store is the truth: a workspace file that differs from what was last
synced is replaced). The ops DB and the lock stay in the workspace, never synced; the chip
files, the cube, ``pruned/`` and the embedded world are never copied into it.

The lock is local: one client writes a dataset at a time (object stores have no locks).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from s2xr.store.layout import DatasetLayout, atomic_write_text, temp_beside
from s2xr.store.objects import filesystem

log = logging.getLogger(__name__)

_NOT_SYNCED = (DatasetLayout.CHIPS, DatasetLayout.CUBE, DatasetLayout.WORLD,
               DatasetLayout.PRUNED)


def synced_name(rel: str) -> bool:
    """``rel`` (relative to the root, ``/``-separated) is copied between workspace and store:
    not the chip files, cube, pruned areas or embedded world (in the store only, or local
    only), nor the ops DB, locks, temp files and sync state (workspace only)."""
    parts = rel.split("/")
    if parts[0] in _NOT_SYNCED or parts[0].startswith(DatasetLayout.OPS_DB):
        return False
    return not parts[-1].startswith(".")


def _load_state(root: Path) -> dict[str, dict[str, Any]]:
    """Per synced file: its local (size, mtime) and store version at the last sync."""
    try:
        return dict(json.loads(DatasetLayout(root).sync_state.read_text()))
    except (FileNotFoundError, ValueError):
        return {}


def _save_state(root: Path, state: dict[str, dict[str, Any]]) -> None:
    atomic_write_text(DatasetLayout(root).sync_state, json.dumps(state, sort_keys=True))


LIST_OVER = 16
"""Above this many files put, :func:`push` reads their versions with one listing."""


def _version(info: dict[str, Any]) -> str:
    """What changes when an object is replaced: its ETag (S3, GCS, Azure), else mtime + size."""
    for key in ("ETag", "etag", "md5Hash"):
        if info.get(key):
            return str(info[key])
    when = info.get("mtime") or info.get("LastModified") or info.get("created")
    if isinstance(when, datetime.datetime):  # a listing and info() may differ in kind
        when = when.timestamp()
    return f"{when}:{info.get('size')}"


def _local_stamp(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def push(layout: DatasetLayout) -> int:
    """Put every workspace file changed since the last sync into the store, the index last
    (the commit), and delete from the store the synced files deleted in the workspace since.
    No-op for a local dataset. Returns the number of files put."""
    if layout.remote is None:
        return 0
    root = layout.root
    state = _load_state(root)
    index = layout.index.relative_to(root).as_posix()
    todo = []
    for f in sorted(root.rglob("*")) if root.exists() else []:
        rel = f.relative_to(root).as_posix()
        if f.is_file() and synced_name(rel) and state.get(rel, {}).get("local") != \
                _local_stamp(f):
            todo.append(rel)
    gone = [rel for rel in state if not (root / rel).is_file()]  # deleted here since
    if not todo and not gone:
        return 0
    todo.sort(key=lambda rel: rel == index)  # the index last: it commits the rest
    fs, base = filesystem(layout.remote)
    base = base.rstrip("/")
    if gone:  # e.g. the STAC items of chips no longer in the index
        fs.rm([f"{base}/{rel}" for rel in gone])
        for rel in gone:
            del state[rel]
    stamps = {rel: _local_stamp(root / rel) for rel in todo}
    first = [rel for rel in todo if rel != index]
    if first:  # one concurrent upload
        fs.put([str(root / rel) for rel in first], [f"{base}/{rel}" for rel in first])
    if index in stamps:
        fs.put_file(str(root / index), f"{base}/{index}")
    # the versions the store gave them: one listing for many files, else one call each
    infos = (_remote_files(fs, base) if len(todo) > LIST_OVER else
             {rel: fs.info(f"{base}/{rel}") for rel in todo})
    for rel in todo:
        info = infos.get(rel) or fs.info(f"{base}/{rel}")
        state[rel] = {"local": stamps[rel], "remote": _version(info)}
    _save_state(root, state)
    log.info("pushed %d file(s) to %s (%d deleted)%s", len(todo), layout.remote, len(gone),
             " (index committed)" if index in stamps else "")
    return len(todo)


def _remote_files(fs: Any, base: str) -> dict[str, dict[str, Any]]:
    """Synced objects under ``base`` → their info (the chip prefixes are never listed)."""
    out: dict[str, dict[str, Any]] = {}
    if not fs.exists(base):
        return out
    for top in fs.ls(base, detail=True):
        name = top["name"].rstrip("/").rsplit("/", 1)[-1]
        if name in _NOT_SYNCED:
            continue
        found = (fs.find(top["name"], detail=True).values() if top["type"] == "directory"
                 else [top])
        for info in found:
            rel = info["name"][len(base) + 1:]
            if synced_name(rel):
                out[rel] = info
    return out


def pull(layout: DatasetLayout) -> int:
    """Bring the workspace up to the store: download every synced object that is new or
    changed there, or whose workspace copy changed since the last sync (the store wins);
    delete workspace copies of objects removed from the store. No-op for a local dataset.
    Returns the number of files downloaded."""
    if layout.remote is None:
        return 0
    root = layout.root
    root.mkdir(parents=True, exist_ok=True)
    fs, base = filesystem(layout.remote)
    base = base.rstrip("/")
    fs.invalidate_cache()
    state = _load_state(root)
    remote = _remote_files(fs, base)
    n = 0
    for rel, info in sorted(remote.items()):
        local, version, had = root / rel, _version(info), state.get(rel)
        if had and had["remote"] == version and local.is_file() and \
                had["local"] == _local_stamp(local):
            continue
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_beside(local)
        try:
            fs.get_file(info["name"], str(tmp))
            tmp.replace(local)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        state[rel] = {"local": _local_stamp(local), "remote": version}
        n += 1
    for rel in [r for r in state if r not in remote]:  # removed from the store since
        local = root / rel
        if local.is_file() and state[rel]["local"] == _local_stamp(local):
            local.unlink()
        del state[rel]
    _save_state(root, state)
    if n:
        log.info("pulled %d file(s) from %s into the workspace %s", n, layout.remote, root)
    return n


_DEPTH: dict[tuple[str, int], int] = {}


@contextlib.contextmanager
def synced(layout: DatasetLayout) -> Iterator[None]:
    """For an object store dataset: :func:`pull` on entry and :func:`push` on exit (also
    after an error: the workspace index only ever names chips whose files are in the
    store). Nested holds in the same thread (a chip job inside ``s2xr run``) sync once.
    Hold the dataset lock around it. Nothing happens for a local dataset."""
    if layout.remote is None:
        yield
        return
    key = (str(layout.root), threading.get_ident())
    if _DEPTH.get(key):
        _DEPTH[key] += 1
        try:
            yield
        finally:
            _DEPTH[key] -= 1
        return
    pull(layout)
    _DEPTH[key] = 1
    try:
        yield
    except BaseException:
        try:
            push(layout)
        except Exception as exc:  # the first error is the one to see
            log.error("could not push the workspace %s to %s: %s", layout.root,
                      layout.remote, exc)
        raise
    else:
        push(layout)
    finally:
        del _DEPTH[key]
