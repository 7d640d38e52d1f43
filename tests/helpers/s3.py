"""A real S3 API on 127.0.0.1: moto's standalone server (``moto_server``, the local S3 that
s3fs's own test suite runs against), started and stopped by the tests."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from s2xr.demo.stac_server import free_port
from s2xr.procs import spawn_child, stop_child

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_DEFAULT_REGION": "eu-west-1"}


@dataclass(frozen=True)
class LocalS3:
    endpoint: str

    def filesystem(self) -> Any:  # an s3fs.S3FileSystem
        import s3fs

        return s3fs.S3FileSystem(key=CREDENTIALS["AWS_ACCESS_KEY_ID"],
                                 secret=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                                 client_kwargs={"endpoint_url": self.endpoint,
                                                "region_name": "eu-west-1"},
                                 skip_instance_cache=True)


@contextlib.contextmanager
def local_s3(timeout_s: float = 60.0) -> Iterator[LocalS3]:
    """``with local_s3() as s3: s3.endpoint`` — moto_server on a free port, stopped on exit."""
    port = free_port()
    exe = Path(sys.executable).parent / "moto_server"
    proc = spawn_child([str(exe), "-H", "127.0.0.1", "-p", str(port)],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"moto_server exited with {proc.returncode}")
            try:
                requests.get(f"{endpoint}/moto-api/", timeout=2)
                break
            except requests.RequestException:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"moto_server did not answer at {endpoint}") from None
                time.sleep(0.1)
        yield LocalS3(endpoint)
    finally:
        stop_child(proc)
