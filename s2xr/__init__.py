"""s2xr: Sentinel-2 + AIS ship chips as xarray/Dask-native, ML-ready datasets.

The stages are plain functions (see ``docs/`` and the README's Jupyter example)::

    grid.tile_geobox / grid.tiles_at        tile geometry, offline
    ais.read_ais_table / ais.position_at    AIS points and positions at sensing time
    scenes.search_scenes / scenes.stack_scenes
    chips.plan_chips / chips.cut_chips
    gate.gate_chips
    labels.label_chips / labels.attach_ship_mask   ship boxes and masks from AIS
    store.write_chips / store.open_chips
"""

__version__ = "0.1.0"
