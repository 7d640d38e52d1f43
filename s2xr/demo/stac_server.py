"""Run a real STAC API (``rustac serve``, memory backend) on 127.0.0.1 for local items.

rustac answers ``bbox`` / ``datetime`` / ``collections`` / ``ids`` searches and paging; it
ignores ``query``/``filter``/``sortby`` (s2xr filters clouds client-side). Asset hrefs must be
``file://`` URIs.
"""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO

import requests

from s2xr.errors import ServerError
from s2xr.procs import forget_child, spawn_child, stop_child

log = logging.getLogger(__name__)


def free_port(host: str = "127.0.0.1") -> int:
    """An unused TCP port on ``host``."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def rustac_executable() -> str:
    """Path of the ``rustac`` CLI installed with the ``rustac`` package."""
    beside = Path(sys.executable).parent / "rustac"
    if beside.is_file():
        return str(beside)
    found = shutil.which("rustac")
    if not found:
        raise ServerError("the `rustac` command is missing; install s2xr's dependencies "
                          "(`make install` or `pip install rustac`)")
    return found


class StacApiServer:
    """Context manager: ``with StacApiServer(collection, items) as srv: srv.url``."""

    def __init__(self, collection_path: Path, items_path: Path, *, host: str = "127.0.0.1",
                 port: int | None = None, public_url: str | None = None,
                 startup_timeout_s: float = 30.0) -> None:
        self.collection_path = Path(collection_path)
        self.items_path = Path(items_path)
        self.host = host
        self.port = port or free_port(host)
        self.public_url = public_url  # links name this address (e.g. a proxy in front)
        self.startup_timeout_s = startup_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None
        # names the running server; a start after a SIGKILL of its parent reaps a stale one
        self.pid_file = self.items_path.parent / f".rustac-{self.port}.pid"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> StacApiServer:
        for p in (self.collection_path, self.items_path):
            if not p.is_file():
                raise ServerError(f"STAC server input {p} does not exist")
        addr = self.public_url or f"{self.host}:{self.port}"
        cmd = [rustac_executable(), "serve", str(self.collection_path), str(self.items_path),
               "--addr", addr, "--bind", f"{self.host}:{self.port}"]
        # the server dies with this process (even on SIGKILL) and its stderr goes to a file,
        # never to a pipe nobody reads while it runs
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self._proc = spawn_child(cmd, pid_file=self.pid_file, stdout=subprocess.DEVNULL,
                                 stderr=self._stderr)
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                self._stderr.seek(0)
                err = self._stderr.read().decode(errors="replace")[-2000:]
                code = self._proc.returncode
                self.stop()
                raise ServerError(f"rustac serve exited with {code}: {err}")
            try:
                if requests.get(self.url + "/", timeout=1).ok:
                    log.info("STAC API serving %s at %s", self.items_path, self.url)
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.1)
        self.stop()
        raise ServerError(f"rustac serve did not answer at {self.url} within "
                          f"{self.startup_timeout_s:.0f} s")

    def stop(self) -> None:
        if self._proc is None:
            return
        stop_child(self._proc)
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        forget_child(self.pid_file)
        log.info("STAC API at %s stopped", self.url)
        self._proc = None

    def __enter__(self) -> StacApiServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
