"""The local S3 the object-store tests run against (moto_server on 127.0.0.1, installed by the
project's own install step): it starts, takes a bucket and objects through s3fs — the
fsspec filesystem s2xr's object-store roots will use — and stops."""

from __future__ import annotations

import numpy as np
import xarray as xr

from s2xr.demo.s3_server import local_s3


def test_moto_server_serves_a_bucket_to_s3fs_and_zarr():
    with local_s3() as s3:
        fs = s3.filesystem()
        fs.mkdir("s2xr-test")
        with fs.open("s2xr-test/a/b.json", "wb") as f:
            f.write(b'{"ok": true}')
        assert fs.cat("s2xr-test/a/b.json") == b'{"ok": true}'
        ds = xr.Dataset({"v": (("chip",), np.arange(5, dtype=np.float32))})
        ds.to_zarr(fs.get_mapper("s2xr-test/c.zarr"), zarr_format=3, consolidated=False)
        back = xr.open_zarr(fs.get_mapper("s2xr-test/c.zarr"), zarr_format=3,
                            consolidated=False)
        np.testing.assert_array_equal(back["v"].values, ds["v"].values)
        assert sorted(fs.ls("s2xr-test", detail=False)) == ["s2xr-test/a", "s2xr-test/c.zarr"]
