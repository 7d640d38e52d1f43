"""Scenes: search STAC for L2A items, match them to ships, stack them lazily."""

from s2xr.scenes.assets import SceneAssets, scene_assets
from s2xr.scenes.items import dedupe_items, items_table, normalize_item, reflectance_params
from s2xr.scenes.loader import READ_ERROR_CLASS, load_stack
from s2xr.scenes.match import candidate_targets
from s2xr.scenes.search import (
    ItemSource,
    MemoryItemSource,
    SceneSearch,
    StacApiSource,
    StaticItemSource,
    search_groups,
    search_scenes,
    source_from_config,
)
from s2xr.scenes.stack import ENGINES, stack_by_epsg, stack_scenes, to_reflectance

__all__ = [
    "ENGINES", "READ_ERROR_CLASS", "ItemSource", "MemoryItemSource", "SceneAssets",
    "SceneSearch", "StacApiSource", "StaticItemSource", "candidate_targets", "dedupe_items",
    "items_table", "load_stack", "normalize_item", "reflectance_params", "scene_assets",
    "search_groups", "search_scenes", "source_from_config", "stack_by_epsg", "stack_scenes",
    "to_reflectance",
]
