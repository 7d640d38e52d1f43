"""The HTTP range server that serves the world's COGs like Earth Search (s2xr.demo.cog_http,
s2xr.demo.cog_server): ranges, latency, bandwidth, faults and counts — checked by counting
(fake clocks, barriers, server counters), never by timing."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import rasterio
import requests

from s2xr.demo.cog_http import Link, RangeServer, parse_range
from s2xr.demo.cog_server import CogServer, http_items

DATA = bytes(range(256)) * 400  # 102,400 bytes


class FakeClock:
    """Counts the server's waits instead of waiting (time moves only when it sleeps)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self.now += max(seconds, 0.0)


class BarrierClock(FakeClock):
    """Every latency wait blocks until ``parties`` requests wait at once: passes only if the
    server applies latency to that many requests concurrently."""

    def __init__(self, parties: int) -> None:
        super().__init__()
        self.barrier = threading.Barrier(parties, timeout=30)

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.barrier.wait()
        super().sleep(seconds)


@pytest.fixture
def root(tmp_path):
    (tmp_path / "scenes").mkdir()
    (tmp_path / "scenes" / "a.bin").write_bytes(DATA)
    return tmp_path


def get(url: str, rng: str | None = None, **kw) -> requests.Response:
    return requests.get(url, headers={"Range": rng} if rng else {}, timeout=30, **kw)


def test_parse_range():
    assert parse_range(None, 100) is None
    assert parse_range("bytes=0-9", 100) == (0, 9)
    assert parse_range("bytes=90-", 100) == (90, 99)
    assert parse_range("bytes=-10", 100) == (90, 99)
    assert parse_range("bytes=50-500", 100) == (50, 99)
    assert parse_range("bytes=100-200", 100) == (100, 100)  # unsatisfiable
    assert parse_range("bytes=0-1,5-6", 100) is None  # several: the whole file
    assert parse_range("bytes=9-0", 100) is None
    assert parse_range("items=0-9", 100) is None
    assert parse_range("bytes=x-9", 100) is None


def test_ranges_head_404_416_and_cache_busting_tags(root):
    clock = FakeClock()
    with RangeServer(root, clock=clock, record=True) as srv:
        url = f"{srv.url}/scenes/a.bin"
        r = get(url, "bytes=1000-1999")
        assert r.status_code == 206 and r.content == DATA[1000:2000]
        assert r.headers["Content-Range"] == f"bytes 1000-1999/{len(DATA)}"
        assert get(url).content == DATA
        assert get(f"{srv.url}/@run7/scenes/a.bin", "bytes=-5").content == DATA[-5:]
        head = requests.head(url, timeout=30)
        assert head.headers["Content-Length"] == str(len(DATA))
        assert head.headers["Accept-Ranges"] == "bytes"
        assert get(url, f"bytes={len(DATA)}-").status_code == 416
        assert get(f"{srv.url}/scenes/missing.bin").status_code == 404
        assert get(f"{srv.url}/scenes/%2e%2e/%2e%2e/etc/passwd").status_code == 404
        c = srv.counts()
        assert c.requests == 7 and c.by_method == {"GET": 6, "HEAD": 1}
        assert c.bytes_served == 1000 + len(DATA) + 5
        assert c.by_status[206] == 2 and c.by_status[416] == 1
        assert c.ranges[0] == ("/scenes/a.bin", 1000, 1999)
        srv.reset()
        assert srv.counts().requests == 0 and srv.counts().bytes_served == 0


def test_latency_is_applied_once_per_request(root):
    clock = FakeClock()
    with RangeServer(root, clock=clock, latency_s=0.06) as srv:
        for k in range(5):
            get(f"{srv.url}/scenes/a.bin", f"bytes={k}-{k}")
        srv.configure(latency_s=0.02)
        requests.head(f"{srv.url}/scenes/a.bin", timeout=30)
        assert clock.sleeps == [0.06] * 5 + [0.02]
        assert srv.counts().latency_s == pytest.approx(5 * 0.06 + 0.02)


def test_latency_waits_overlap_across_concurrent_requests(root):
    n = 8
    clock = BarrierClock(n)  # a server that serialised requests would break the barrier
    with RangeServer(root, clock=clock, latency_s=0.02) as srv:
        with ThreadPoolExecutor(n) as pool:
            rs = list(pool.map(lambda k: get(f"{srv.url}/scenes/a.bin", f"bytes={k}-{k}"),
                               range(n)))
        assert all(r.status_code == 206 for r in rs)
        assert srv.counts().peak_in_flight == n


def test_bandwidth_cap_is_shared_by_the_link(root):
    clock = FakeClock()
    with RangeServer(root, clock=clock, bandwidth=10_000) as srv:
        get(f"{srv.url}/scenes/a.bin")
        get(f"{srv.url}/scenes/a.bin", "bytes=0-4999")
    # waited the bytes' time on the link: (102,400 + 5,000) B at 10 kB/s
    assert sum(s for s in clock.sleeps if s > 0) == pytest.approx(10.74, rel=1e-6)


def test_faults_at_the_configured_rate_seeded(root):
    def run(seed: int) -> tuple[list[int], dict[str, int]]:
        with RangeServer(root, fault_rate=0.2, fault_kinds=("503",), seed=seed) as srv:
            codes = [get(f"{srv.url}/scenes/a.bin", "bytes=0-0").status_code
                     for _ in range(400)]
            return codes, srv.counts().faults

    codes, faults = run(3)
    assert faults == {"503": codes.count(503)}
    assert 0.15 < codes.count(503) / 400 < 0.25  # seeded: deterministic, not a flake
    assert set(codes) == {206, 503}
    assert run(3)[0] == codes  # the same seed, the same faults


def test_reset_and_stall_faults(root):
    with RangeServer(root, stall_s=600) as srv:
        url = f"{srv.url}/scenes/a.bin"
        srv.inject("reset")
        with pytest.raises(requests.ConnectionError):
            get(url, "bytes=0-9")
        srv.inject("stall")
        with pytest.raises(requests.exceptions.ReadTimeout):
            requests.get(url, headers={"Range": "bytes=0-9"}, timeout=0.5)
        assert get(url, "bytes=0-9").content == DATA[:10]  # the next request is fine
        assert srv.counts().faults == {"reset": 1, "stall": 1}
    # stop() returned although a request was stalled for 600 s: stalls end with the server


def test_link_is_validated():
    with pytest.raises(ValueError):
        Link(fault_kinds=("timeout",))
    with pytest.raises(ValueError):
        Link(fault_rate=1.5)
    with pytest.raises(ValueError):
        Link(bandwidth=0)


def test_gdal_reads_the_worlds_cogs_over_http_with_latency(world):
    """rasterio/GDAL read a world COG from the child-process server: same pixels as the
    file, each request delayed (counted at the server), a 503 and a stall are read errors,
    and the server process is gone at exit (conftest fails leaked children)."""
    item = world.items()[0]
    path = item["assets"]["red"]["href"].removeprefix("file://")
    with rasterio.open(path) as src:
        want = src.read(1, window=((0, 300), (500, 800)))
    env = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR", "GDAL_HTTP_MAX_RETRY": "0",
           "GDAL_HTTP_TIMEOUT": "2"}
    with CogServer(world.root, latency_s=0.02, record=True) as srv:
        url = http_items([item], world.root, srv.url)[0]["assets"]["red"]["href"]
        assert url == srv.href(path) and url.startswith(srv.url + "/scenes/")
        with rasterio.Env(**env), rasterio.open(url) as src:
            got = src.read(1, window=((0, 300), (500, 800)))
        np.testing.assert_array_equal(got, want)
        c = srv.counts()
        assert c.requests >= 2 and c.latency_s == pytest.approx(0.02 * c.requests)
        assert c.bytes_served == sum(b - a + 1 for _, a, b in c.ranges)
        assert c.ranges[0][1] == 0  # the header first
        srv.reset()
        srv.inject("503")
        with rasterio.Env(**env), pytest.raises(rasterio.errors.RasterioIOError):
            rasterio.open(srv.href(path, tag="fault"))
        srv.configure(fault_rate=1.0, fault_kinds=("stall",), latency_s=0.0)
        with rasterio.Env(**env), pytest.raises(rasterio.errors.RasterioIOError):
            rasterio.open(srv.href(path, tag="stall"))  # ends at GDAL's 2 s timeout
        faults = srv.counts().faults
        assert faults["503"] == 1 and faults["stall"] >= 1
