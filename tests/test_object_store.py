"""Object store roots without a server (fsspec's in-memory store, ``memory://``): the config
turns a URL root into a workspace; the workspace sync puts the index last, lets the store
win, and carries deletions; a store that cannot be written is refused naming the URL, never
the credentials; commands that need a local dataset say so."""

from __future__ import annotations

import secrets
from pathlib import Path

import fsspec
import pytest
from click.testing import CliRunner

from pipelines.cli import main
from s2xr.config import build_config, default_workspace
from s2xr.errors import ConfigError, StorageError
from s2xr.store import sync
from s2xr.store.layout import DatasetLayout
from s2xr.store.objects import check_writable, join, list_files, open_sink, read_bytes


@pytest.fixture
def mem():
    """A fresh ``memory://`` prefix and its filesystem (fsspec's memory store is global)."""
    prefix = f"/s2xr-{secrets.token_hex(4)}"
    fs = fsspec.filesystem("memory")
    yield f"memory:/{prefix}", fs, prefix
    if fs.exists(prefix):
        fs.rm(prefix, recursive=True)


def _layout(url: str, ws: Path) -> DatasetLayout:
    cfg = build_config({"storage": {"root": url, "workspace": str(ws)}}, environ={},
                       dotenv_path=None)
    return DatasetLayout.of(cfg)


def test_a_url_root_gets_a_workspace_and_dumps_back_as_the_url(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    cfg = build_config({"storage": {"root": "s3://bucket/some/prefix/"}}, environ={},
                       dotenv_path=None)
    assert cfg.storage.url == "s3://bucket/some/prefix"
    assert cfg.storage.root == default_workspace(cfg.storage.url) == \
        tmp_path / "cache" / "s2xr" / "workspaces" / "s3" / "bucket" / "some" / "prefix"
    assert cfg.model_dump(mode="json")["storage"]["root"] == "s3://bucket/some/prefix"
    ws = build_config({"storage": {"root": "s3://b/p", "workspace": str(tmp_path / "w")}},
                      environ={}, dotenv_path=None)
    assert ws.storage.root == tmp_path / "w" and DatasetLayout.of(ws).ops_db.parent == \
        tmp_path / "w"  # the ops DB stays local
    with pytest.raises(ConfigError, match="workspace: only for an object store root"):
        build_config({"storage": {"root": str(tmp_path), "workspace": str(tmp_path)}},
                     environ={}, dotenv_path=None)
    with pytest.raises(ConfigError, match=r"give the object store URL as storage\.root"):
        build_config({"storage": {"url": "s3://b/p"}}, environ={}, dotenv_path=None)


def test_push_puts_changed_files_with_the_index_last_and_carries_deletions(
        mem, tmp_path, monkeypatch):
    url, fs, prefix = mem
    layout = _layout(url, tmp_path / "ws")
    for rel in ("indexes/tiles.parquet", "indexes/labels.parquet", "stac/catalog.json",
                "ops.sqlite", ".s2xr.lock", "world/world.json"):
        (layout.root / rel).parent.mkdir(parents=True, exist_ok=True)
        (layout.root / rel).write_text(rel)
    order: list[str] = []
    put, put_file = type(fs).put, type(fs).put_file
    monkeypatch.setattr(type(fs), "put", lambda self, lp, rp, **kw: (
        order.extend(rp), put(self, lp, rp, **kw))[1])
    monkeypatch.setattr(type(fs), "put_file", lambda self, lp, rp, **kw: (
        order.append(rp), put_file(self, lp, rp, **kw))[1])
    assert sync.push(layout) == 3
    assert order[-1].endswith("indexes/tiles.parquet")  # the commit comes last
    assert sorted(list_files(url)) == ["indexes/labels.parquet", "indexes/tiles.parquet",
                                       "stac/catalog.json"]  # no ops DB, lock or world
    assert sync.push(layout) == 0  # nothing changed
    (layout.root / "stac/catalog.json").unlink()
    (layout.root / "indexes/labels.parquet").write_text("changed")
    order.clear()
    assert sync.push(layout) == 1 and set(order) == {f"{prefix}/indexes/labels.parquet"}
    assert "stac/catalog.json" not in list_files(url)  # deleted here → deleted there
    assert read_bytes(join(url, "indexes", "labels.parquet")) == b"changed"


def test_push_of_many_files_reads_their_versions_with_one_listing(mem, tmp_path, monkeypatch):
    url, fs, prefix = mem
    layout = _layout(url, tmp_path / "ws")
    n = sync.LIST_OVER + 4
    for k in range(n):
        (layout.root / "stac" / f"item-{k}.json").parent.mkdir(parents=True, exist_ok=True)
        (layout.root / "stac" / f"item-{k}.json").write_text(str(k))
    infos: list[str] = []
    info = type(fs).info
    monkeypatch.setattr(type(fs), "info", lambda self, p, **kw: (infos.append(p),
                                                                  info(self, p, **kw))[1])
    assert sync.push(layout) == n
    assert not [p for p in infos if "item-" in p]  # no call per file
    state = sync._load_state(layout.root)
    monkeypatch.undo()
    for k in range(n):  # the recorded versions are the store's
        rel = f"stac/item-{k}.json"
        assert state[rel]["remote"] == sync._version(fs.info(f"{prefix}/{rel}"))
    assert sync.pull(layout) == 0  # and pull agrees nothing changed


def test_pull_lets_the_store_win_and_drops_what_it_removed(mem, tmp_path):
    url, fs, prefix = mem
    fs.pipe(f"{prefix}/indexes/tiles.parquet", b"v1")
    fs.pipe(f"{prefix}/manifest.json", b"{}")
    fs.pipe(f"{prefix}/chips/train/1/2/x.tif", b"pixels")  # never copied into a workspace
    layout = _layout(url, tmp_path / "ws")
    assert sync.pull(layout) == 2
    index = layout.index
    assert index.read_bytes() == b"v1" and not (layout.root / "chips").exists()
    assert sync.pull(layout) == 0  # nothing new
    index.write_bytes(b"uncommitted")  # a crash after the local write, before the push
    fs.pipe(f"{prefix}/indexes/tiles.parquet", b"v2")
    fs.rm(f"{prefix}/manifest.json")
    assert sync.pull(layout) == 1
    assert index.read_bytes() == b"v2" and not layout.manifest.exists()


def test_synced_pushes_after_an_error_and_syncs_once_when_nested(mem, tmp_path):
    url, _fs, _prefix = mem
    layout = _layout(url, tmp_path / "ws")
    with pytest.raises(RuntimeError), sync.synced(layout):
        with sync.synced(layout):  # a chip job inside `s2xr run`
            layout.index.parent.mkdir(parents=True)
            layout.index.write_bytes(b"rows")
        assert list_files(url) == []  # the inner exit pushed nothing yet
        raise RuntimeError("boom")
    assert list_files(url) == ["indexes/tiles.parquet"]


def test_a_sink_puts_a_batch_whole_or_not_at_all(mem):
    url, _fs, _prefix = mem
    with open_sink(url) as sink:
        sink.write("chips/a.json", lambda p: p.write_text("a"))
        sink.write("chips/b.json", lambda p: p.write_text("b"))
        assert list_files(url) == []  # staged until the batch ends
    assert sorted(list_files(url)) == ["chips/a.json", "chips/b.json"]
    with pytest.raises(ValueError), open_sink(url) as sink:
        sink.write("chips/c.json", lambda p: p.write_text("c"))
        raise ValueError("the batch failed")
    assert "chips/c.json" not in list_files(url)


def test_an_unwritable_store_is_refused_naming_the_url_not_the_secret(monkeypatch):
    pytest.importorskip("s3fs")
    from s2xr.demo.s3_server import local_s3

    secret = "s3cr3t-" + secrets.token_hex(8)
    with local_s3() as s3:
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
        monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
        monkeypatch.setenv("AWS_ENDPOINT_URL", s3.endpoint)
        import s3fs

        s3fs.S3FileSystem.clear_instance_cache()
        with pytest.raises(StorageError) as exc:
            check_writable("s3://no-such-bucket/ds")
        s3fs.S3FileSystem.clear_instance_cache()
    msg = str(exc.value)
    assert "s3://no-such-bucket/ds" in msg and "not writable" in msg and secret not in msg


@pytest.mark.parametrize("args", [["prune"], ["doctor", "--offline"], ["dashboard"],
                                  ["collect-ais", "--duration", "1"]])
def test_commands_that_need_a_local_dataset_refuse_a_url_root(args, tmp_path, monkeypatch):
    monkeypatch.setenv("S2XR_STORAGE__ROOT", "s3://bucket/ds")
    monkeypatch.setenv("S2XR_STORAGE__WORKSPACE", str(tmp_path / "ws"))
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 2, res.output
    assert "s3://bucket/ds is an object store" in res.output and "chip, " in res.output
    assert not (tmp_path / "ws").exists()  # refused before anything was written


def test_a_store_run_that_dies_mid_way_is_reconciled_in_the_store(mem, tmp_path, monkeypatch):
    """An object store dataset (memory://) whose writer dies at its third batch: the store
    keeps the objects and cube rows of two batches that no index names; a reader sees
    nothing; reconcile (what the next job and `s2xr vacuum` do first) deletes those objects
    and turns the rows into holes; the re-run then gives the chip set of a clean run."""
    import dask
    from test_worker_writes import MANY, _write, write_dying_at_third_batch

    from s2xr.config import StorageConfig
    from s2xr.ops.maintenance import vacuum_dataset
    from s2xr.store import open_chips, read_index

    url, _fs, _prefix = mem
    ws = tmp_path / "ws"
    storage = StorageConfig(root=url, workspace=ws)
    write_dying_at_third_batch(storage, monkeypatch, "store gone")
    chips = join(url, "chips")
    assert any(f.endswith(".tif") for f in list_files(chips))  # objects of two batches
    assert open_chips(url).sizes["chip"] == 0  # nothing committed: a reader sees none
    rep = vacuum_dataset(ws, ws / "ops.sqlite", data_root=url)
    assert rep.orphan_files_removed > 0 and rep.cube_rows_dropped > 0
    assert list_files(chips) == []
    with dask.config.set(scheduler="threads"):
        _plan, summary = _write(storage)
    clean = tmp_path / "clean"
    with dask.config.set(scheduler="threads"):
        _write(clean)
    assert set(open_chips(url)["chip_id"].values.astype(object)) == set(
        open_chips(clean)["chip_id"].values.astype(object)) == set(
        read_index(clean).query("qa_pass")["chip_id"])
    assert len(MANY) == summary.n_chips
