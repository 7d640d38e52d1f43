"""A real S3 API on 127.0.0.1: moto's standalone server (``moto_server``, the local S3 that
s3fs's own test suite runs against; installed with the ``test`` extra), started and stopped
by the tests and the end-to-end benchmark. Its credentials are moto's dummies."""

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
    pid: int = 0  # the moto_server process (its CPU time: what the server cost)

    @property
    def environ(self) -> dict[str, str]:
        """The environment an s2xr process needs to reach this S3 (``s3://`` roots)."""
        return {**CREDENTIALS, "AWS_ENDPOINT_URL": self.endpoint}

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
        _forget_filesystems()  # fsspec caches s3fs instances: none may keep an old endpoint
        yield LocalS3(endpoint, proc.pid)
    finally:
        _forget_filesystems()
        stop_child(proc)


def _forget_filesystems() -> None:
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()


@contextlib.contextmanager
def s3_environ(s3: LocalS3) -> Iterator[None]:
    """This process's environment set to reach ``s3`` (restored on exit), so s2xr's
    ``s3://`` roots, geopandas and Zarr find it like any S3 (credentials and endpoint from
    the environment)."""
    import os

    old = {k: os.environ.get(k) for k in s3.environ}
    os.environ.update(s3.environ)
    _forget_filesystems()
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        _forget_filesystems()
