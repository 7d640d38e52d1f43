"""Test helpers that are real servers on 127.0.0.1: a counting, fault-injecting HTTP proxy.

:class:`FaultProxy` forwards every request to an upstream server (e.g. the rustac STAC API),
counts requests by path and answers chosen requests with faults instead:

* ``Fault.status(429, {"Retry-After": "1"})`` / ``Fault.status(503)`` — an HTTP error;
* ``Fault.hang()`` — accept the request and answer nothing until the proxy stops (or
  ``release_hangs()``), as a stalled server does;
* ``Fault.truncated()`` — the upstream answer cut in half while ``Content-Length`` promises
  all of it (the connection then closes);
* ``Fault.invalid()`` — ``200 OK`` with a body that is not JSON (an HTML error page);
* ``Fault.body(text)`` — ``200 OK`` with any body (e.g. JSON that echoes a secret, or valid
  JSON that is not an ItemCollection).

Faults are queued per path prefix (``proxy.inject(Fault.hang(), path="/search")``) and each
is used once, in order. Used by the tests and the STAC benchmark.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

import requests

from s2xr.demo.stac_server import free_port


@dataclass(frozen=True)
class Fault:
    """One injected answer (see the module doc for the kinds)."""

    kind: str
    status_code: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    text: str = ""

    @classmethod
    def status(cls, code: int, headers: dict[str, str] | None = None) -> Fault:
        return cls("status", code, dict(headers or {}))

    @classmethod
    def hang(cls) -> Fault:
        return cls("hang")

    @classmethod
    def truncated(cls) -> Fault:
        return cls("truncated")

    @classmethod
    def invalid(cls) -> Fault:
        return cls("body", 200, {"Content-Type": "application/json"},
                   "<html><body>502 Bad Gateway</body></html>")

    @classmethod
    def body(cls, text: str, code: int = 200) -> Fault:
        return cls("body", code, {"Content-Type": "application/json"}, text)


class FaultProxy:
    """``with FaultProxy(upstream) as p: p.url; p.counts['/search']``."""

    def __init__(self, upstream: str, *, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.upstream = upstream.rstrip("/")
        self.host = host
        self.port = port or free_port(host)
        self.counts: Counter[str] = Counter()
        self.log: list[tuple[str, str]] = []
        self.faults_served: Counter[str] = Counter()
        self._queues: list[tuple[str, list[Fault]]] = []
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def inject(self, *faults: Fault, path: str = "") -> None:
        """Queue ``faults`` for the next requests whose path starts with ``path``."""
        with self._lock:
            for prefix, q in self._queues:
                if prefix == path:
                    q.extend(faults)
                    return
            self._queues.append((path, list(faults)))

    def clear_faults(self) -> None:
        with self._lock:
            self._queues.clear()

    def pending_faults(self) -> int:
        with self._lock:
            return sum(len(q) for _, q in self._queues)

    def release_hangs(self) -> None:
        """Let every hung request end (its connection is closed without an answer)."""
        self._release.set()

    def reset(self) -> None:
        with self._lock:
            self.counts.clear()
            self.log.clear()
            self.faults_served.clear()

    def _next_fault(self, path: str) -> Fault | None:
        for prefix, q in self._queues:
            if q and path.startswith(prefix):
                return q.pop(0)
        return None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                return

            def _upstream(self, method: str, body: bytes | None) -> requests.Response:
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("host", "content-length")}
                return requests.request(method, proxy.upstream + self.path, data=body,
                                        headers=headers, timeout=60)

            def _send(self, status: int, headers: dict[str, str], content: bytes,
                      length: int | None = None) -> None:
                self.send_response(status)
                for k, v in headers.items():
                    if k.lower() not in ("transfer-encoding", "content-length", "connection",
                                         "content-encoding"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(content) if length is None
                                                       else length))
                self.end_headers()
                self.wfile.write(content)

            def _forward(self, method: str) -> None:
                path = self.path.split("?", 1)[0]
                with proxy._lock:
                    proxy.counts[path] += 1
                    proxy.log.append((method, self.path))
                    fault = proxy._next_fault(path)
                    if fault is not None:
                        proxy.faults_served[fault.kind] += 1
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if fault is None:
                    resp = self._upstream(method, body)
                    self._send(resp.status_code, dict(resp.headers), resp.content)
                elif fault.kind == "status":
                    self._send(fault.status_code, fault.headers, b"")
                elif fault.kind == "body":
                    self._send(fault.status_code, fault.headers, fault.text.encode())
                elif fault.kind == "truncated":
                    resp = self._upstream(method, body)
                    half = resp.content[: max(len(resp.content) // 2, 1)]
                    self._send(resp.status_code, dict(resp.headers), half,
                               length=len(resp.content))
                    self.close_connection = True
                elif fault.kind == "hang":
                    proxy._release.wait()
                    self.close_connection = True
                else:  # pragma: no cover - guarded by Fault's constructors
                    raise ValueError(fault.kind)

            def do_GET(self) -> None:
                self._forward("GET")

            def do_POST(self) -> None:
                self._forward("POST")

        return Handler

    def start(self) -> FaultProxy:
        self._release.clear()
        self._server = ThreadingHTTPServer((self.host, self.port), self._handler())
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True,
                         name="fault-proxy").start()
        return self

    def stop(self) -> None:
        self._release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

