"""Shared fixtures: the embedded world (built once per session) and its STAC API."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"


def load_json(rel: str) -> dict:
    return json.loads((DATA / rel).read_text())


@pytest.fixture(scope="session")
def real_items() -> dict[str, dict]:
    """The real Earth Search items in tests/data/stac, by id."""
    out = {}
    for p in sorted((DATA / "stac").glob("*.json")):
        d = json.loads(p.read_text())
        out[d["id"]] = d
    return out


@pytest.fixture(scope="session")
def demo_config():
    from s2xr.config import DemoConfig

    return DemoConfig()


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory, demo_config):
    """The demo's embedded world (same config as `s2xr demo`), rendered once."""
    from s2xr.demo import build_world

    return build_world(tmp_path_factory.mktemp("world"), demo_config)


@pytest.fixture(scope="session")
def stac_server(world):
    """A real STAC API (rustac) serving the world's items on 127.0.0.1."""
    from s2xr.demo import StacApiServer

    with StacApiServer(world.collection_path, world.items_path) as srv:
        yield srv
