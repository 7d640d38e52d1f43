"""Shared fixtures: the embedded world (built once per session) and its STAC API."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"


def load_json(rel: str) -> dict:
    return json.loads((DATA / rel).read_text())


@pytest.fixture(scope="session")
def real_items() -> dict[str, dict]:
    """The real Earth Search items in tests/data/stac, by id."""
    out = {}
    for p in sorted((DATA / "stac").glob("*.json")):
        d = json.loads(p.read_text())
        out[d["id"]] = d
    return out


@pytest.fixture(scope="session")
def demo_config():
    from s2xr.config import DemoConfig

    return DemoConfig()


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory, demo_config):
    """The demo's embedded world (same config as `s2xr demo`), rendered once."""
    from s2xr.demo import build_world

    return build_world(tmp_path_factory.mktemp("world"), demo_config)


@pytest.fixture(scope="session")
def stac_server(world):
    """A real STAC API (rustac) serving the world's items on 127.0.0.1."""
    from s2xr.demo import StacApiServer

    with StacApiServer(world.collection_path, world.items_path) as srv:
        yield srv


# --------------------------------------------------------------------------- leaked children
# A test that starts a process must stop it, also when the test fails. The check below fails
# the test whose body left a child running (children of session/module fixtures started in
# the setup phase are not counted), and the session fails if any child outlives it. Leaked
# processes are killed so that they cannot hold ports or CPU for the rest of the suite.

def _children() -> dict[int, str]:
    import psutil

    out = {}
    for p in psutil.Process().children(recursive=True):
        try:
            cmd = " ".join(p.cmdline())
        except psutil.Error:
            continue
        if not any(b in cmd for b in _BENIGN):
            out[p.pid] = cmd[:160]
    return out


def _running(p) -> bool:
    import psutil

    try:
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# interpreter-wide helpers that live as long as the test process by design
_BENIGN = ("multiprocessing.resource_tracker", "multiprocessing.forkserver")


def _kill_leaked(pids: dict[int, str], grace_s: float = 10.0) -> dict[int, str]:
    """Wait up to ``grace_s`` for ``pids`` to exit on their own; kill and return the rest."""
    import psutil

    procs = []
    for pid in pids:
        try:
            procs.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            continue
    _, alive = psutil.wait_procs(procs, timeout=grace_s)
    alive = [p for p in alive if _running(p)]
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    psutil.wait_procs(alive, timeout=10)
    return {p.pid: pids[p.pid] for p in alive}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    item._s2xr_children_before = set(_children())  # type: ignore[attr-defined]
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None):
    result = yield
    before = getattr(item, "_s2xr_children_before", None)
    if before is None:
        return
    new = {pid: cmd for pid, cmd in _children().items() if pid not in before}
    leaked = _kill_leaked(new) if new else {}
    if leaked:
        item.add_report_section("teardown", "leaked processes", repr(leaked))
        pytest.fail(f"{item.nodeid} left {len(leaked)} child process(es) running (killed): "
                    f"{leaked}", pytrace=False)
    return result


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    leaked = _kill_leaked(_children(), grace_s=5.0)
    if leaked:
        import sys

        print(f"\nERROR: child process(es) outlived the test session (killed): {leaked}",
              file=sys.stderr)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
