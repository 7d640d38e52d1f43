"""Test helpers that are real servers on 127.0.0.1: a counting, fault-injecting HTTP proxy.

``CountingProxy`` forwards every request to an upstream server (e.g. the rustac STAC API),
counts requests by path and can answer the next requests with chosen statuses (429 with
``Retry-After``, 5xx) to exercise retries. Used by the tests and the STAC benchmark.
"""

from __future__ import annotations

import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

import requests

from s2xr.demo.stac_server import free_port


class CountingProxy:
    """``with CountingProxy(upstream) as p: p.url; p.counts['/search']``."""

    def __init__(self, upstream: str, *, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.upstream = upstream.rstrip("/")
        self.host = host
        self.port = port or free_port(host)
        self.counts: Counter[str] = Counter()
        self.log: list[tuple[str, str]] = []
        self.fail_next: list[tuple[int, dict[str, str]]] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def reset(self) -> None:
        with self._lock:
            self.counts.clear()
            self.log.clear()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                return

            def _forward(self, method: str) -> None:
                path = self.path.split("?", 1)[0]
                with proxy._lock:
                    proxy.counts[path] += 1
                    proxy.log.append((method, self.path))
                    fail = proxy.fail_next.pop(0) if proxy.fail_next else None
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if fail is not None:
                    status, headers = fail
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("host", "content-length")}
                resp = requests.request(method, proxy.upstream + self.path, data=body,
                                        headers=headers, timeout=60)
                self.send_response(resp.status_code)
                for k, v in resp.headers.items():
                    if k.lower() not in ("transfer-encoding", "content-length", "connection",
                                         "content-encoding"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(resp.content)))
                self.end_headers()
                self.wfile.write(resp.content)

            def do_GET(self) -> None:
                self._forward("GET")

            def do_POST(self) -> None:
                self._forward("POST")

        return Handler

    def start(self) -> CountingProxy:
        self._server = ThreadingHTTPServer((self.host, self.port), self._handler())
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> CountingProxy:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
