"""Fault tolerance (issue 12): hung and lying STAC servers, the job lifecycle, typed rejects,
storage failures, the dataset lock, the ops DB migration race and orphaned servers."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pandas as pd
import psutil
import pyarrow.parquet as pq
import pytest
import yaml
from click.testing import CliRunner

from pipelines.chip_job import run_chip_job
from pipelines.cli import main
from s2xr.ais.mmsi import parse_mmsi
from s2xr.config import StacConfig, build_config
from s2xr.demo import StacApiServer
from s2xr.errors import StacError, StorageError, explain_io_error
from s2xr.ops import JobStore, connect
from s2xr.scenes import search_scenes
from s2xr.scenes.search import StacApiSource
from s2xr.store.consistency import dataset_lock
from s2xr.store.layout import DatasetLayout
from s2xr.store.rejects import read_rejects, write_rejects
from s2xr.testing import Fault, FaultProxy


@pytest.fixture()
def proxied(world):
    """The world's STAC API behind a fault-injecting proxy (links name the proxy)."""
    proxy = FaultProxy("http://127.0.0.1:0")
    with StacApiServer(world.collection_path, world.items_path, public_url=proxy.url) as srv:
        proxy.upstream = srv.url
        with proxy:
            yield proxy


def _points(world, n_ships: int = 2) -> pd.DataFrame:
    ais = pd.read_csv(world.ais_path)
    keep = ais["mmsi"].drop_duplicates().head(n_ships)
    return ais.loc[ais["mmsi"].isin(keep)].reset_index(drop=True)


def _cfg(root: Path, url: str, **sections: dict) -> object:
    data = {"stac": {"api_url": url, "collection": "sentinel-2-l2a", "window_hours": 6,
                     "max_retries": 1, "backoff_s": 0.01, "timeout_s": 5},
            "storage": {"root": str(root)}, "demo": {},
            "ops": {"initial_backoff_min": 0}}
    for k, v in sections.items():
        data.setdefault(k, {}).update(v)
    return build_config(data, environ={}, dotenv_path=None)


# --------------------------------------------------------------------------- 1. timeouts
@pytest.mark.timeout(300)
def test_hung_stac_server_times_out_and_a_single_hang_is_retried(proxied, world):
    pts = _points(world, 1).head(3)
    cfg = StacConfig(api_url=proxied.url, collection="sentinel-2-l2a", window_hours=6,
                     max_retries=1, backoff_s=0, timeout_s=1.0)
    src = StacApiSource(proxied.url, cfg)
    clean = search_scenes(pts, cfg, src)
    assert clean.items
    # one stalled answer: the request times out after timeout_s and is asked again
    proxied.inject(Fault.hang(), path="/search")
    again = search_scenes(pts, cfg, src)
    assert [i["id"] for i in again.items] == [i["id"] for i in clean.items]
    assert proxied.faults_served["hang"] == 1
    # a server that never answers: an error (not an endless wait) once retries are spent
    proxied.inject(*[Fault.hang()] * 4, path="/search")
    with pytest.raises(StacError, match="failed"):
        search_scenes(pts, cfg, src)


# --------------------------------------------------------------------------- 2. bad bodies
def test_cut_off_and_invalid_bodies_are_retried_request_by_request(proxied, world):
    pts = _points(world, 1).head(3)
    cfg = StacConfig(api_url=proxied.url, collection="sentinel-2-l2a", window_hours=6,
                     max_retries=3, backoff_s=0, timeout_s=10)
    src = StacApiSource(proxied.url, cfg)
    clean = search_scenes(pts, cfg, src)
    n_clean = proxied.counts["/search"]
    proxied.reset()
    proxied.inject(Fault.truncated(), Fault.invalid(), Fault.body("[1, 2]"), path="/search")
    res = search_scenes(pts, cfg, src)
    assert [i["id"] for i in res.items] == [i["id"] for i in clean.items]
    assert proxied.counts["/search"] == n_clean + 3  # each bad answer cost one more request
    assert proxied.pending_faults() == 0


def test_one_failed_search_defers_only_its_ship_days_and_the_retry_closes_them(
        proxied, world, tmp_path):
    """Of 3 (tile, day) searches the first gets two unusable answers (retries spent): only
    its ship-days are deferred, the other days are chipped; `ops retry` completes them and
    closes the deferral; a second retry finds nothing due; re-runs add no job rows."""
    ais = tmp_path / "ais.csv"
    _points(world, 2).to_csv(ais, index=False)
    root = tmp_path / "ds"
    cfg = _cfg(root, proxied.url)
    proxied.inject(Fault.invalid(), Fault.truncated(), path="/search")
    res = run_chip_job(cfg, ais)
    assert res.n_searches == 3 and res.n_deferred == 2  # 2 ships x the failed day
    assert res.n_chips > 0  # the other days went on
    store = JobStore(DatasetLayout.of(cfg).ops_db, cfg.ops)
    deferred = store.jobs(states=("deferred",))
    assert sorted(deferred["job_id"].str.split("|").str[0]) == ["defer", "defer"]
    assert deferred["job_id"].str.endswith(deferred["job_id"].iloc[0][-8:]).all()
    chipped_before = set(store.jobs(states=("done", "rejected"))["chip_id"].dropna())
    n_rows = len(store.jobs())
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    out = CliRunner().invoke(main, ["ops", "retry", "--config", str(cfg_file)])
    assert out.exit_code == 0, out.output
    assert "1 deferred" not in out.output and "0 deferred" in out.output
    assert store.jobs(states=("deferred", "failed", "pending")).empty
    closed = store.jobs().set_index("job_id").loc[deferred["job_id"]]
    assert (closed["state"] == "done").all()
    assert closed["reason"].str.startswith("search succeeded").all()
    assert set(store.jobs(states=("done", "rejected"))["chip_id"].dropna()) > chipped_before
    # nothing is due any more: a second retry does nothing
    out2 = CliRunner().invoke(main, ["ops", "retry", "--config", str(cfg_file)])
    assert out2.exit_code == 0 and "no job is due" in out2.output
    # job ids are stable: a full re-run adds no rows (no per-run `noscene|…|run_id` ids)
    n_rows = len(store.jobs())
    run_chip_job(cfg, ais)
    run_chip_job(cfg, ais)
    assert len(store.jobs()) == n_rows


# --------------------------------------------------------------------------- 3/9. disk full
def test_disk_full_is_one_line_and_leaves_the_jobs_retryable(stac_server, world, tmp_path,
                                                             monkeypatch):
    """A write fails with ENOSPC mid-job: the CLI prints one line (no traceback), the run is
    recorded failed and its chip jobs are `failed` (due), not `pending`; `ops retry` then
    completes them."""
    import s2xr.store.batch as writer

    ais = tmp_path / "ais.csv"
    _points(world, 2).to_csv(ais, index=False)
    root = tmp_path / "ds"
    cfg = _cfg(root, stac_server.url)
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    real = writer._write_files

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(root / "chips" / "x.tif"))

    monkeypatch.setattr(writer, "_write_files", full)
    out = CliRunner().invoke(main, ["chip", "--config", str(cfg_file), "--ais", str(ais)])
    assert out.exit_code == 1
    err = [ln for ln in out.output.splitlines() if ln.startswith("error:")]
    assert len(err) == 1 and "disk full" in err[0] and "ops retry" in err[0]
    assert "Traceback" not in out.output
    store = JobStore(DatasetLayout.of(cfg).ops_db, cfg.ops)
    assert store.jobs(states=("pending", "running")).empty
    failed = store.jobs(states=("failed",))
    assert len(failed) > 0 and failed["reason"].str.contains("No space left").all()
    with connect(store.path) as c:
        assert c.execute("SELECT status FROM runs WHERE kind='chip'").fetchone()[0] == "failed"
    monkeypatch.setattr(writer, "_write_files", real)
    out = CliRunner().invoke(main, ["ops", "retry", "--config", str(cfg_file)])
    assert out.exit_code == 0, out.output
    assert store.jobs(states=("pending", "running", "failed")).empty
    assert len(store.jobs(states=("done",))) > 0


def test_jobs_a_failed_run_left_pending_become_due(tmp_path):
    """A database written by a run that died mid-way (jobs still `pending`, run `failed`):
    recovery makes them due retries."""
    store = JobStore(tmp_path / "ops.sqlite")
    run = store.start_run("chip")
    store.register(pd.DataFrame({"job_id": ["a", "b"], "mmsi": [235000001, 235000002],
                                 "item_id": ["i", "i"],
                                 "scene_datetime": [pd.Timestamp("2026-10-02T11:00Z")] * 2,
                                 "chip_id": ["a", "b"]}), run)
    store.end_run(run, "failed", {"error": "OSError: [Errno 28]"})
    assert store.due().empty
    store.recover()
    assert set(store.jobs(states=("failed",))["job_id"]) == {"a", "b"}
    store.cfg = store.cfg.model_copy(update={"initial_backoff_min": 0})
    store.mark(["a"], "failed", "again")  # attempt 2 with zero back-off: due now
    assert "a" in set(store.due()["job_id"])


@pytest.mark.parametrize("exc, word", [
    (OSError(errno.ENOSPC, "No space left on device"), "disk full"),
    (OSError(errno.EACCES, "Permission denied", "/data/x"), "permission denied at /data/x"),
    (RuntimeError("Write failed."), "raster write failed"),
])
def test_storage_failures_are_explained(exc, word):
    wrapped = RuntimeError("while writing block 3")
    wrapped.__cause__ = exc
    assert word in explain_io_error(wrapped)
    assert explain_io_error(ValueError("a bug")) is None


# --------------------------------------------------------------------------- 4. typed rejects
def test_rejects_keep_a_fixed_schema_whatever_the_mmsi(tmp_path):
    """Raw MMSIs that are not numbers never reach the mmsi column; later appends work."""
    bad = pd.DataFrame({"row": [0, 1, 2], "mmsi": ["../../tmp/x", 18446744073709551615, 2.5],
                        "item_id": [None, None, None], "stage": "ais",
                        "reason": ["mmsi: bad"] * 3})
    write_rejects(tmp_path, bad, parse_mmsi=parse_mmsi)
    good = pd.DataFrame({"row": [pd.NA], "mmsi": [235000001], "item_id": ["S2B_x"],
                         "stage": "gate", "reason": ["cloud"]})
    write_rejects(tmp_path, good, parse_mmsi=parse_mmsi)
    schema = pq.read_schema(tmp_path / "indexes" / "rejects.parquet")
    assert str(schema.field("mmsi").type) == "int64" and str(schema.field("row").type) == \
        "int64"
    rej = read_rejects(tmp_path, parse_mmsi=parse_mmsi)
    assert len(rej) == 4
    assert rej["mmsi"].isna().sum() == 3 and int(rej["mmsi"].dropna().iloc[0]) == 235000001
    assert set(rej["value"].dropna()) == {"../../tmp/x", "18446744073709551615", "2.5"}


def test_a_poisoned_rejects_file_is_coerced_not_fatal(tmp_path):
    """A file an older version wrote with raw text MMSIs does not break later jobs."""
    path = tmp_path / "indexes" / "rejects.parquet"
    path.parent.mkdir(parents=True)
    pd.DataFrame({"row": [1], "mmsi": ["../../tmp/x"], "item_id": ["None"], "stage": ["ais"],
                  "reason": ["x"]}).to_parquet(path)
    write_rejects(tmp_path, pd.DataFrame({"row": [2], "mmsi": [235000001], "item_id": [None],
                                          "stage": ["plan"], "reason": ["y"]}),
                  parse_mmsi=parse_mmsi)
    assert str(pq.read_schema(path).field("mmsi").type) == "int64"
    assert len(read_rejects(tmp_path, parse_mmsi=parse_mmsi)) == 2


# --------------------------------------------------------------------------- 8. lock, DB, kids
def test_a_run_holds_the_dataset_lock_before_it_plans_or_captures(world, tmp_path):
    from pipelines.run_job import RunOptions, run_batch
    from s2xr.config import load_config

    root = tmp_path / "ds"
    root.mkdir()
    os.symlink(world.root, root / "world")
    data = yaml.safe_load(Path("configs/demo.yaml").read_text())
    data["storage"]["root"] = str(root)
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(yaml.safe_dump(data))
    cfg = load_config(cfg_file)
    held, release = threading.Event(), threading.Event()

    def other_run() -> None:
        with dataset_lock(root):
            held.set()
            release.wait(120)

    t = threading.Thread(target=other_run)
    t.start()
    try:
        assert held.wait(60)
        with pytest.raises(StorageError, match="another s2xr run"):
            run_batch(cfg, RunOptions(max_ships=2))
        assert not (root / "plan").exists() and not (root / "ais").exists()
    finally:
        release.set()
        t.join()
    # the same thread may nest the chip job inside its run (reentrant), another may not
    with dataset_lock(root), dataset_lock(root, reentrant=True):
        errors = []
        t2 = threading.Thread(target=lambda: _try_lock(root, errors))
        t2.start()
        t2.join()
        assert errors and "another s2xr run" in errors[0]


def _try_lock(root: Path, errors: list[str]) -> None:
    try:
        with dataset_lock(root, reentrant=True):
            pass
    except StorageError as exc:
        errors.append(str(exc))


def test_processes_opening_a_new_ops_db_at_once_all_succeed(tmp_path):
    """4 processes x 20 new databases, released together: no `table runs already exists`."""
    go = tmp_path / "go"
    script = textwrap.dedent(f"""
        import os, sys, time
        from pathlib import Path
        from s2xr.ops import JobStore
        go = Path({str(go)!r})
        while not go.exists():
            time.sleep(0.005)
        errors = 0
        for k in range(20):
            try:
                JobStore(Path({str(tmp_path)!r}) / f"db{{k}}" / "ops.sqlite").counts()
            except Exception as exc:
                errors += 1
                print(type(exc).__name__, exc, file=sys.stderr)
        sys.exit(1 if errors else 0)
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE,
                              text=True) for _ in range(4)]
    try:
        go.touch()
        results = [(p.wait(timeout=240), p.stderr.read()) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
            p.stderr.close()
    assert all(code == 0 for code, _ in results), results
    for k in range(20):
        with connect(tmp_path / f"db{k}" / "ops.sqlite") as c:
            assert c.execute("PRAGMA user_version").fetchone()[0] >= 3


def test_stac_server_dies_with_a_sigkilled_parent(world, tmp_path):
    """`rustac serve` started by a process that is SIGKILLed does not outlive it."""
    script = textwrap.dedent(f"""
        import sys, threading
        from s2xr.demo import StacApiServer
        srv = StacApiServer({str(world.collection_path)!r}, {str(world.items_path)!r}).start()
        print(srv._proc.pid, flush=True)
        threading.Event().wait()
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    child = None
    try:
        child = psutil.Process(int(parent.stdout.readline()))
        assert child.is_running()
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=30)
        child.wait(timeout=30)  # raises TimeoutExpired if the server outlives its parent
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        parent.stdout.close()
        if child is not None and child.is_running():
            child.kill()


def _describe(pid: int) -> str:
    import psutil

    try:
        p = psutil.Process(pid)
        return f"pid {pid}: status={p.status()} cmdline={p.cmdline()} name={p.name()}"
    except psutil.Error as exc:
        return f"pid {pid}: {exc!r}"


def test_a_stale_pid_file_is_reaped_on_the_next_start(tmp_path):
    """Where no parent-death signal exists, the pid file left behind names the orphan."""
    from s2xr.procs import reap_stale

    orphan = subprocess.Popen(["sleep", "300"])
    try:
        pid_file = tmp_path / ".rustac-1.pid"
        pid_file.write_text(f"{orphan.pid}\nsleep\n999999999\n")  # parent long gone
        assert reap_stale(pid_file), _describe(orphan.pid)
        assert orphan.wait(timeout=30) is not None and not pid_file.exists()
        alive = tmp_path / ".rustac-2.pid"
        alive.write_text(f"{orphan.pid}\nsleep\n{os.getpid()}\n")  # parent alive: left alone
        assert not reap_stale(alive) and alive.exists()
    finally:
        if orphan.poll() is None:
            orphan.kill()
            orphan.wait()


@pytest.fixture()
def small_disk(tmp_path):
    """A 6 MB tmpfs (needs root, as CI and the dev machines run; skipped elsewhere)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"cannot mount a small tmpfs here: {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_really_full_disk_is_one_line_and_retryable(stac_server, world, tmp_path,
                                                      small_disk):
    ais = tmp_path / "ais.csv"
    _points(world, 8).to_csv(ais, index=False)  # ~20 chips: far more than 6 MB
    # the ops DB on another disk, so what fills up is the dataset's stores
    cfg = _cfg(small_disk / "ds", stac_server.url, ops={"db_path": str(tmp_path / "ops.db")})
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    out = CliRunner().invoke(main, ["chip", "--config", str(cfg_file), "--ais", str(ais)])
    assert out.exit_code == 1, out.output
    err = [ln for ln in out.output.splitlines() if ln.startswith("error:")]
    assert len(err) == 1 and ("disk full" in err[0] or "write failed" in err[0]), out.output
    assert "Traceback" not in out.output
    subprocess.run(["mount", "-o", "remount,size=256m", str(small_disk)], check=True)
    store = JobStore(DatasetLayout.of(cfg).ops_db, cfg.ops)
    assert store.jobs(states=("pending", "running")).empty
    out = CliRunner().invoke(main, ["ops", "retry", "--config", str(cfg_file)])
    assert out.exit_code == 0, out.output
    assert store.jobs(states=("pending", "running", "failed")).empty
    assert len(store.jobs(states=("done",))) > 0, (out.output, store.jobs())


def test_bad_mmsis_in_an_ais_file_are_rejects_not_a_poisoned_dataset(stac_server, world,
                                                                     tmp_path):
    """`../../tmp/x`, 2^64−1, `2.35e8` and a padded MMSI are rejected with their raw text;
    the job and every later job on the root succeed; no path is built from them."""
    pts = _points(world, 2)
    bad = pts.head(4).astype({"mmsi": object})
    bad["mmsi"] = ["../../tmp/x", "18446744073709551615", "2.35e8", " 235000001 "]
    ais = tmp_path / "ais.csv"
    pd.concat([pts, bad]).to_csv(ais, index=False)
    root = tmp_path / "ds"
    cfg = _cfg(root, stac_server.url)
    first = run_chip_job(cfg, ais)
    second = run_chip_job(cfg, ais)  # a later job on the same root with rejects: no error
    assert first.n_chips > 0 and second.n_chips == 0
    rej = read_rejects(root, parse_mmsi=parse_mmsi)
    ais_rej = rej.loc[rej["stage"] == "ais"]
    assert set(ais_rej["value"]) >= {"../../tmp/x", "18446744073709551615", "2.35e8",
                                     " 235000001 "}
    assert ais_rej["mmsi"].isna().all()
    assert str(pq.read_schema(root / "indexes" / "rejects.parquet").field("mmsi").type) == \
        "int64"
    ship_dirs = {p.name for p in (root / "chips").glob("*/*") if p.is_dir()}
    assert ship_dirs and all(d.isdigit() and len(d) == 9 for d in ship_dirs)


def test_fix_times_parses_each_overpass_time_on_its_own():
    from s2xr.ais.fixtime import fix_times

    pts = pd.DataFrame({"mmsi": [235000001] * 3, "time": [pd.NaT] * 3,
                        "overpass_time": ["2026-10-02T11:00:00+05:30", "2026-10-02T11:00:00",
                                          "2026-10-02T11:00:00Z"]})
    got = fix_times(pts)["time"]
    want = pd.to_datetime(["2026-10-02T05:30:00Z", "2026-10-02T11:00:00Z",
                           "2026-10-02T11:00:00Z"], utc=True)
    assert list(got) == list(want)


def test_an_unreachable_stac_api_defers_every_ship_day(world, tmp_path):
    """The API cannot even be opened: nothing is searched, every ship-day is deferred (one
    job each), and the job itself ends normally."""
    from s2xr.demo.stac_server import free_port

    ais = tmp_path / "ais.csv"
    _points(world, 2).to_csv(ais, index=False)
    cfg = _cfg(tmp_path / "ds", f"http://127.0.0.1:{free_port()}")
    res = run_chip_job(cfg, ais)
    assert res.n_searches == 0 and res.n_chips == 0 and res.n_deferred == 6  # 2 ships x 3 days
    deferred = JobStore(DatasetLayout.of(cfg).ops_db, cfg.ops).jobs(states=("deferred",))
    assert len(deferred) == 6 and deferred["reason"].str.contains("cannot open STAC API").all()
