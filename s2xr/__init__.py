"""s2xr: Sentinel-2 + AIS ship chips as xarray/Dask-native, ML-ready datasets.

The stages are plain functions; a notebook needs only this package's top level::

    import s2xr

    cfg = s2xr.load_config("configs/demo.yaml")             # typed sections: cfg.stac, cfg.chip ...
    points = s2xr.read_ais_table("ais.csv").points           # AIS points
    found = s2xr.search_scenes(points, cfg.stac)             # the STAC items that saw them
    stack = s2xr.stack_scenes(found.items, cfg.chip.all_bands)   # lazy (time, band, y, x)
    items = s2xr.items_table(found.items, cfg.chip.all_bands)
    targets, _ = s2xr.candidate_targets(points, items, cfg.stac.window_hours)
    plan = s2xr.plan_chips(targets, items, cfg.chip).plan    # one row per chip
    chips = s2xr.gate_chips(s2xr.cut_chips(stack, plan, cfg.chip), cfg.gate)   # lazy Dataset
    s2xr.open_chips("s2xr-demo")                             # a finished dataset, lazily

(``targets`` still need the ships' positions at sensing time, ``s2xr.position_at``, before
planning; ``s2xr.write_chips`` writes a gated cube with its plan.)

The names in ``__all__`` are imported on first use (``import s2xr`` itself loads neither
xarray nor Dask); the sub-packages hold the rest::

    s2xr.grid      tile geometry, offline          s2xr.ais       AIS tables and tracks
    s2xr.scenes    STAC search and stacks          s2xr.chips     chip plans and cutting
    s2xr.gate      the quality gate                s2xr.labels    ship boxes and masks
    s2xr.store     the dataset on disk             s2xr.planning  overpass prediction
"""

from __future__ import annotations

import importlib
from importlib import metadata as _metadata
from typing import TYPE_CHECKING, Any

try:
    __version__: str = _metadata.version("s2xr")
except _metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

if TYPE_CHECKING:
    from s2xr.ais import position_at, read_ais_table
    from s2xr.ais.targets import position_targets
    from s2xr.chips import ChipPlan, cut_chips, plan_chips
    from s2xr.config import ChipSpec, Config, GateConfig, StacConfig, StorageConfig, load_config
    from s2xr.demo import StacApiServer, build_world
    from s2xr.errors import S2xrError
    from s2xr.gate import gate_chips
    from s2xr.grid import tile_geobox, tiles_at
    from s2xr.labels import attach_ship_mask, label_chips
    from s2xr.planning import predict_overpasses
    from s2xr.scenes import candidate_targets, items_table, search_scenes, stack_scenes
    from s2xr.store import open_chips, write_chips

# public name -> the module that defines it (imported on first attribute access)
_LAZY: dict[str, str] = {
    # configuration and errors
    "Config": "s2xr.config",
    "load_config": "s2xr.config",
    "StacConfig": "s2xr.config",
    "ChipSpec": "s2xr.config",
    "GateConfig": "s2xr.config",
    "StorageConfig": "s2xr.config",
    "S2xrError": "s2xr.errors",
    # the grid
    "tile_geobox": "s2xr.grid",
    "tiles_at": "s2xr.grid",
    # AIS and overpasses
    "read_ais_table": "s2xr.ais",
    "position_at": "s2xr.ais",
    "predict_overpasses": "s2xr.planning",
    # scenes
    "search_scenes": "s2xr.scenes",
    "items_table": "s2xr.scenes",
    "candidate_targets": "s2xr.scenes",
    "stack_scenes": "s2xr.scenes",
    # chips
    "plan_chips": "s2xr.chips",
    "ChipPlan": "s2xr.chips",
    "cut_chips": "s2xr.chips",
    "gate_chips": "s2xr.gate",
    "label_chips": "s2xr.labels",
    "attach_ship_mask": "s2xr.labels",
    # the dataset
    "write_chips": "s2xr.store",
    "open_chips": "s2xr.store",
    # ships at sensing time
    "position_targets": "s2xr.ais.targets",
    # the embedded offline world (synthetic, labelled so) and its STAC API
    "build_world": "s2xr.demo",
    "StacApiServer": "s2xr.demo",
}

__all__ = [
    "ChipPlan",
    "ChipSpec",
    "Config",
    "GateConfig",
    "S2xrError",
    "StacApiServer",
    "StacConfig",
    "StorageConfig",
    "attach_ship_mask",
    "build_world",
    "candidate_targets",
    "cut_chips",
    "gate_chips",
    "items_table",
    "label_chips",
    "load_config",
    "open_chips",
    "plan_chips",
    "position_at",
    "position_targets",
    "predict_overpasses",
    "read_ais_table",
    "search_scenes",
    "stack_scenes",
    "tile_geobox",
    "tiles_at",
    "write_chips",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 's2xr' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
