"""Batch jobs and the ``s2xr`` CLI: wire the library's stages, the Dask client and stores."""
