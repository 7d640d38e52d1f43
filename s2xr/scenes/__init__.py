"""Scenes: search STAC for L2A items, match them to ships, stack them lazily."""

from s2xr.scenes.items import dedupe_items, items_table, normalize_item, reflectance_params
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
from s2xr.scenes.stack import stack_by_epsg, stack_scenes, to_reflectance

__all__ = [
    "ItemSource", "MemoryItemSource", "SceneSearch", "StacApiSource", "StaticItemSource",
    "candidate_targets", "dedupe_items", "items_table", "normalize_item", "reflectance_params",
    "search_groups", "search_scenes", "source_from_config", "stack_by_epsg", "stack_scenes",
    "to_reflectance",
]
