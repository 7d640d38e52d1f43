"""Stores: Zarr chip cube, per-chip COG/GeoJSON/JSON/JPG, GeoParquet index, daily footprints,
the ship label table and the dataset card."""

from s2xr.store.card import write_dataset_card
from s2xr.store.cube import append_cube, open_chips
from s2xr.store.index import read_index
from s2xr.store.labels import read_labels
from s2xr.store.writer import WriteSummary, write_chips

__all__ = ["WriteSummary", "append_cube", "open_chips", "read_index", "read_labels",
           "write_chips", "write_dataset_card"]
