"""An HTTP range server over a directory with a simulated bad network (standard library only).

:class:`RangeServer` is a real HTTP/1.1 server (a thread per connection: many requests in
flight) serving a directory with ``Range`` (one range per request; a request for several gets
the whole file, as RFC 9110 allows), ``HEAD`` and keep-alive — what GDAL's ``/vsicurl/``
needs to read a COG. The link it simulates (:class:`Link`):

* ``latency_s`` — every request waits this long before its answer starts, each on its own
  thread, so concurrent requests overlap their waits as round trips do;
* ``bandwidth`` — bytes/s shared by every response body (one link), ``None`` = no cap;
* ``fault_rate`` — the share of requests answered with a fault, the kind drawn from
  ``fault_kinds`` by a seeded RNG: ``"503"`` (Service Unavailable), ``"reset"`` (the
  connection is reset, no answer), ``"stall"`` (no answer for ``stall_s`` — longer than a
  client timeout — then the connection closes). ``inject`` queues faults for the next
  requests instead.

It counts requests, bytes, faults and requests in flight (thread-safe) and with ``record``
logs every served range. A first path segment starting with ``@`` is ignored (``/@run2/a.tif``
serves ``/a.tif``): clients cache per URL, so a new tag gives a cold client cache.

rasterio holds the GIL while GDAL opens a dataset, so a server in a thread of the process
that calls ``rasterio.open`` deadlocks: :class:`s2xr.demo.cog_server.CogServer` runs this file
as a child process and drives it through ``/_s2xr/`` control requests (never counted, delayed
or faulted). In a thread, :class:`RangeServer` serves pure-Python clients (e.g. with a fake
:class:`Clock`).
"""

from __future__ import annotations

import contextlib
import json
import random
import socket
import struct
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, BinaryIO, Protocol
from urllib.parse import unquote, urlsplit

FAULT_KINDS = ("503", "reset", "stall")
CHUNK = 64 * 1024
CONTROL = "/_s2xr/"


class Clock(Protocol):
    """Where the server's waits go (a fake one makes latency countable in tests)."""
    def monotonic(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class RealClock:
    monotonic = staticmethod(time.monotonic)

    def sleep(self, seconds: float) -> None:
        time.sleep(max(seconds, 0.0))


@dataclass(frozen=True)
class Link:
    """The simulated network between client and server (see the module doc)."""

    latency_s: float = 0.0
    bandwidth: float | None = None  # bytes/s over all responses; None: unlimited
    fault_rate: float = 0.0
    fault_kinds: tuple[str, ...] = FAULT_KINDS
    stall_s: float = 60.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "fault_kinds", tuple(self.fault_kinds))
        if (self.latency_s < 0 or not 0 <= self.fault_rate <= 1 or self.stall_s < 0
                or (self.bandwidth is not None and self.bandwidth <= 0) or not self.fault_kinds
                or set(self.fault_kinds) - set(FAULT_KINDS)):
            raise ValueError(f"bad link (fault kinds among {FAULT_KINDS}): {self}")


@dataclass(frozen=True)
class Counts:
    """What a server did since it started or was last reset."""

    requests: int = 0  # every request, faults included (control requests excluded)
    by_method: dict[str, int] = field(default_factory=dict)
    by_status: dict[int, int] = field(default_factory=dict)  # answered requests
    faults: dict[str, int] = field(default_factory=dict)
    bytes_served: int = 0  # response body bytes written
    latency_s: float = 0.0  # latency waits applied, summed over requests
    busy_s: float = 0.0  # request durations summed (÷ wall time = mean requests in flight)
    peak_in_flight: int = 0
    ranges: tuple[tuple[str, int, int], ...] = ()  # (path, first, last) served, if recorded


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """One ``Range: bytes=…`` → (first, last), inclusive, clipped to the file; ``None``: the
    whole file (no header, several ranges or an unparsable one); ``(size, size)``: a range
    that cannot be satisfied (416)."""
    spec = (header or "").strip()
    a, sep, b = spec[6:].strip().partition("-")
    if not spec.startswith("bytes=") or "," in spec or not sep or not (a or b):
        return None
    try:
        first, last = (size - int(b), size - 1) if a == "" else (int(a), int(b or size - 1))
    except ValueError:
        return None
    if a and b and first > last:
        return None
    return (size, size) if first >= size or last < first else (max(first, 0), min(last, size - 1))


class RangeServer:
    """``with RangeServer(root, latency_s=0.02) as srv: srv.url`` (keywords: :class:`Link`
    fields; ``seed`` seeds the fault RNG)."""

    def __init__(self, root: str | Path, *, host: str = "127.0.0.1", port: int = 0,
                 seed: int = 0, clock: Clock | None = None, record: bool = False,
                 **link: Any) -> None:
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise FileNotFoundError(f"range server root {self.root} is not a directory")
        self.host, self.port = host, port
        self.link = Link(**link)
        self.clock: Clock = clock or RealClock()
        self.record = record
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._reset_state(in_flight=0)
        self._queued: list[str] = []
        self._link_free = 0.0  # when the shared link is next free (bandwidth cap)
        self._stop = threading.Event()
        self._conns: set[socket.socket] = set()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def configure(self, **link: Any) -> None:
        """Change the link (any :class:`Link` field) for the next requests."""
        with self._lock:
            self.link = replace(self.link, **link)

    def inject(self, kind: str, n: int = 1) -> None:
        """The next ``n`` requests get fault ``kind`` (before any random fault)."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"fault kind must be among {FAULT_KINDS}, got {kind!r}")
        with self._lock:
            self._queued.extend([kind] * n)

    def counts(self) -> Counts:
        with self._lock:
            return Counts(requests=sum(self._methods.values()), by_method=dict(self._methods),
                          by_status=dict(self._statuses), faults=dict(self._faults),
                          bytes_served=self._bytes, latency_s=self._latency, busy_s=self._busy,
                          peak_in_flight=self._peak, ranges=tuple(self._ranges))

    def reset(self) -> None:
        """Zero the counts (requests in flight stay in flight)."""
        with self._lock:
            self._reset_state(self._in_flight)

    def _reset_state(self, in_flight: int) -> None:
        self._methods: Counter[str] = Counter()
        self._statuses: Counter[int] = Counter()
        self._faults: Counter[str] = Counter()
        self._bytes, self._latency, self._busy = 0, 0.0, 0.0
        self._in_flight = self._peak = in_flight
        self._ranges: list[tuple[str, int, int]] = []

    def _begin(self, method: str) -> tuple[str | None, Link, float]:
        with self._lock:
            self._methods[method] += 1
            self._in_flight += 1
            self._peak = max(self._peak, self._in_flight)
            link = self.link
            fault = self._queued.pop(0) if self._queued else None
            if fault is None and link.fault_rate > 0 and self._rng.random() < link.fault_rate:
                fault = self._rng.choice(link.fault_kinds)
            if fault is not None:
                self._faults[fault] += 1
            self._latency += link.latency_s
            return fault, link, self.clock.monotonic()

    def _end(self, t0: float) -> None:
        dt = self.clock.monotonic() - t0
        with self._lock:
            self._in_flight -= 1
            self._busy += dt

    def _note(self, status: int | None = None, sent: int = 0,
              served: tuple[str, int, int] | None = None) -> None:
        with self._lock:
            if status is not None:
                self._statuses[status] += 1
            self._bytes += sent
            if served is not None and self.record and served[2] >= served[1]:
                self._ranges.append(served)

    def _throttle(self, n: int, link: Link) -> None:
        """Wait until ``n`` more bytes fit through the shared link."""
        if link.bandwidth is None:
            return
        with self._lock:
            self._link_free = max(self.clock.monotonic(), self._link_free) + n / link.bandwidth
            until = self._link_free
        self.clock.sleep(until - self.clock.monotonic())

    def resolve(self, url_path: str) -> Path | None:
        """The file a request path names (``None``: none, or outside the root)."""
        parts = [p for p in unquote(urlsplit(url_path).path).split("/") if p]
        if parts and parts[0].startswith("@"):
            parts = parts[1:]
        if not parts or any(p in (".", "..") or "\\" in p for p in parts):
            return None
        p = self.root.joinpath(*parts)
        return p if p.is_file() else None

    def control(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """Answer a control request (``/_s2xr/NAME``) → JSON."""
        if name == "counts":
            return asdict(self.counts())
        if name == "configure":
            self.configure(**body)
        elif name == "reset":
            self.reset()
        elif name == "inject":
            self.inject(body["kind"], int(body.get("n", 1)))
        elif name != "ping":
            raise KeyError(name)
        return {"ok": True, "link": asdict(self.link)}

    def start(self) -> RangeServer:
        if self._server is None:
            self._stop.clear()
            self._server = _Server((self.host, self.port), _handler(self))
            self.port = int(self._server.server_address[1])
            self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                            name=f"range-server-{self.port}")
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving: end stalls, close every open connection, join the accept loop."""
        if self._server is None:
            return
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = self._thread = None

    def __enter__(self) -> RangeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Server(ThreadingHTTPServer):
    request_queue_size = 256  # many clients connect at once (tens of requests in flight)
    daemon_threads = True


def _handler(srv: RangeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = 300  # an idle keep-alive connection ends its thread after this

        def log_message(self, *args: object) -> None:
            return

        def setup(self) -> None:
            super().setup()
            with srv._lock:
                srv._conns.add(self.connection)

        def finish(self) -> None:
            with srv._lock:
                srv._conns.discard(self.connection)
            with contextlib.suppress(OSError):
                super().finish()

        def do_GET(self) -> None:
            self._serve(body=True)

        def do_HEAD(self) -> None:
            self._serve(body=False)

        def do_POST(self) -> None:
            n = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(n) if n else b""
            if not self.path.startswith(CONTROL):
                self._empty(405)
                return
            try:
                out = srv.control(self.path[len(CONTROL):], json.loads(raw or b"{}"))
                code = 200
            except (KeyError, TypeError, ValueError) as exc:
                out, code = {"error": repr(exc)}, 400
            data = json.dumps(out).encode()
            self._head(code, {"Content-Type": "application/json",
                              "Content-Length": str(len(data))}, count=False)
            self.wfile.write(data)

        def _serve(self, body: bool) -> None:
            if self.path.startswith(CONTROL):
                self.do_POST()
                return
            fault, link, t0 = srv._begin(self.command)
            try:
                srv.clock.sleep(link.latency_s)
                if fault == "reset":  # RST (SO_LINGER 0): 'connection reset by peer'
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                               struct.pack("ii", 1, 0))
                    self.close_connection = True
                    self.connection.close()
                elif fault == "stall":
                    srv._stop.wait(link.stall_s)
                    self.close_connection = True
                elif fault == "503":
                    self._empty(503, {"Retry-After": "1"})
                else:
                    self._file(body, link)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True
            finally:
                srv._end(t0)

        def _head(self, code: int, headers: dict[str, str], count: bool = True) -> None:
            if count:
                srv._note(status=code)
            self.send_response(code)
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()

        def _empty(self, code: int, headers: dict[str, str] | None = None) -> None:
            self._head(code, {**(headers or {}), "Content-Length": "0"})

        def _file(self, body: bool, link: Link) -> None:
            path = srv.resolve(self.path)
            if path is None:
                self._empty(404)
                return
            size = path.stat().st_size
            rng = parse_range(self.headers.get("Range"), size)
            if rng == (size, size):
                self._empty(416, {"Content-Range": f"bytes */{size}"})
                return
            first, last = rng or (0, size - 1)
            code = 200 if rng is None else 206
            head = {"Content-Type": "image/tiff", "Accept-Ranges": "bytes",
                    "Content-Length": str(last - first + 1)}
            if code == 206:
                head["Content-Range"] = f"bytes {first}-{last}/{size}"
            self._head(code, head)
            if body:
                with path.open("rb") as f:
                    self._copy(f, first, last, link, "/" + path.relative_to(srv.root).as_posix())

        def _copy(self, f: BinaryIO, first: int, last: int, link: Link, rel: str) -> None:
            pos = first
            try:
                while pos <= last:
                    f.seek(pos)
                    data = f.read(min(CHUNK, last - pos + 1))
                    srv._throttle(len(data), link)
                    self.wfile.write(data)
                    srv._note(sent=len(data))
                    pos += len(data)
            finally:
                srv._note(served=(rel, first, pos - 1))

    return Handler


def main() -> None:
    """``python cog_http.py JSON`` (RangeServer keywords): serve until SIGTERM or SIGINT (the
    child process of :class:`s2xr.demo.cog_server.CogServer`)."""
    import signal
    import sys

    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    with RangeServer(**json.loads(sys.argv[1])):
        done.wait()


if __name__ == "__main__":
    main()
